"""JVM artifacts from Maven Central, resolved once with Maven and cached on disk.

The Kafka broker runs from the jars of ``org.apache.kafka:kafka_2.13`` and its runtime
dependencies; Spark's own packages (Delta, the Kafka connector) are resolved by Spark's
``spark.jars.packages`` into an ivy cache next to them (see ``resources/spark.py``).
"""

import shutil
import subprocess
import textwrap
from pathlib import Path

from anomaly_assets import settings

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"

_POM = """\
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>anomaly_assets.local</groupId>
  <artifactId>{artifact}</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
{dependencies}
  </dependencies>
</project>
"""


class JarResolutionError(RuntimeError):
    """Maven could not fetch the jars; the message says what to fix."""


def _dependency_xml(coordinate: str) -> str:
    group, artifact, version = coordinate.split(":")
    return textwrap.indent(
        f"<dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
        f"<version>{version}</version></dependency>",
        "    ",
    )


def resolve_jars(
    name: str, coordinates: list[str], cache_dir: Path | None = None
) -> Path:
    """Copy ``coordinates`` and their runtime dependencies into ``<cache>/<name>/lib``.

    Returns the lib folder. A marker file makes later calls free and offline.
    """
    target = (cache_dir or settings.JAR_CACHE_DIR) / name
    lib = target / "lib"
    marker = lib / ".complete"
    if marker.exists():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise JarResolutionError(
            "Maven ('mvn') is needed to fetch JVM jars from Maven Central; install it "
            "(apt-get install maven) or put it on PATH."
        )
    target.mkdir(parents=True, exist_ok=True)
    pom = target / "pom.xml"
    pom.write_text(
        _POM.format(
            artifact=name,
            dependencies="\n".join(_dependency_xml(c) for c in coordinates),
        )
    )
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={lib}",
        "-DincludeScope=runtime",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise JarResolutionError(
            f"Maven could not resolve {', '.join(coordinates)}:\n{proc.stdout[-2000:]}"
            f"{proc.stderr[-2000:]}"
        )
    marker.write_text("\n".join(coordinates) + "\n")
    return lib


def kafka_broker_jars(
    version: str = KAFKA_VERSION, cache_dir: Path | None = None
) -> Path:
    """The Apache Kafka broker (KRaft) and a log4j2 binding for its slf4j logging."""
    return resolve_jars(
        f"kafka-{version}",
        [
            f"org.apache.kafka:kafka_2.13:{version}",
            f"org.apache.logging.log4j:log4j-slf4j-impl:{LOG4J_VERSION}",
        ],
        cache_dir,
    )
