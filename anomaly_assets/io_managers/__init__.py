from anomaly_assets.io_managers.delta import DeltaIOManager

__all__ = ["DeltaIOManager"]
