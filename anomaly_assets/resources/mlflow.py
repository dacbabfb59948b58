"""MLflow: the tracking store and model registry (sqlite locally), and run tracking for assets.

``MlflowResource`` holds the settings and registry operations. ``MlflowTracking`` hands an
asset dagster-mlflow's ``MlFlow`` object: one MLflow run per Dagster run, tagged with the
Dagster run id, in the configured experiment. Nothing here imports mlflow at module load.
"""

from typing import Any

from dagster import ConfigurableResource, InitResourceContext, ResourceDependency
from pydantic import Field, PrivateAttr

from anomaly_assets import settings

#: The MLflow experiment of the enrichment evaluation runs (evaluation writes them;
#: enrichment's shadow prompts log there too).
EVAL_EXPERIMENT = "ai_enrichment_eval"

CHAMPION = "champion"
#: The label stage's latest model (model/label_stage.py), champion or not.
CHALLENGER = "challenger"


class MlflowResource(ConfigurableResource):
    """Where MLflow lives and what the model is registered as."""

    tracking_uri: str = Field(
        default=f"sqlite:///{settings.LOCAL_DIR / 'mlflow.db'}",
        description="Tracking and registry store: sqlite locally, http(s):// for a server.",
    )
    artifact_location: str = Field(
        default=str(settings.LOCAL_DIR / "mlflow-artifacts"),
        description="Artifact root for experiments this project creates (local or s3:// ...).",
    )
    registered_model_name: str = Field(default="anomaly_assets_isolation_forest")

    def client(self):
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        return mlflow.MlflowClient(self.tracking_uri, self.tracking_uri)

    def ensure_experiment(self, name: str) -> str:
        """Create the experiment with this project's artifact location if it is new."""
        client = self.client()
        existing = client.get_experiment_by_name(name)
        if existing is not None:
            return existing.experiment_id
        location = f"{self.artifact_location.rstrip('/')}/{name}"
        return client.create_experiment(name, artifact_location=location)

    def champion_version(self):
        """The registry's champion model version, or None."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client().get_model_version_by_alias(
                self.registered_model_name, CHAMPION
            )
        except MlflowException:
            return None


class MlflowTracking(ConfigurableResource):
    """dagster-mlflow tracking for one experiment: at step start it opens (or resumes) the
    MLflow run tagged with this Dagster run's id; ``run`` is dagster-mlflow's ``MlFlow``
    object (the mlflow module bound to that run)."""

    mlflow_settings: ResourceDependency[MlflowResource]
    experiment_name: str = Field(default="anomaly_model")

    _mlflow: Any = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        from dagster_mlflow.resources import MlFlow

        self.mlflow_settings.ensure_experiment(self.experiment_name)
        self._mlflow = MlFlow(
            context.replace_config(
                {
                    "experiment_name": self.experiment_name,
                    "mlflow_tracking_uri": self.mlflow_settings.tracking_uri,
                    "extra_tags": {"project": "anomaly_assets"},
                }
            )
        )

    @property
    def run(self):
        return self._mlflow
