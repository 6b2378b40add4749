"""The Docker deployment, checked without a Docker engine: the compose file is coherent, every
secret it requires is documented, and the image builds with the same script CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parent.parent / "docker"


def _compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_the_spec_services_are_there() -> None:
    services = _compose()["services"]
    assert set(services) == {"traefik", "api", "voice", "postgres", "valkey", "backup"}
    assert services["backup"]["command"] == ["backup", "run-scheduler"]
    assert services["api"]["command"] == ["serve"]
    assert services["voice"]["command"] == ["voice"]
    assert "10000-10100:10000-10100/udp" in services["voice"]["ports"]
    assert {"80:80", "443:443"} <= set(services["traefik"]["ports"])


def test_named_volumes_are_declared() -> None:
    compose = _compose()
    declared = set(compose["volumes"])
    assert declared == {"postgres_data", "valkey_data", "uploads", "certs", "backups"}
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if not source.startswith(("/", ".")):
                assert source in declared, f"{name} mounts undeclared volume {source}"


def test_dependencies_wait_for_health() -> None:
    services = _compose()["services"]
    for dependency in ("postgres", "valkey"):
        assert "healthcheck" in services[dependency]
        assert services["api"]["depends_on"][dependency]["condition"] == "service_healthy"


def test_production_and_every_required_secret_is_documented() -> None:
    text = (DOCKER / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    documented = {
        line.split("=", 1)[0].lstrip("# ")
        for line in (DOCKER / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#  ")
    }
    assert required, "the compose file should insist on its secrets"
    assert required <= documented, required - documented
    environment = _compose()["services"]["api"]["environment"]
    assert environment["VOICECHAT_ENV"] == "production"


def test_tls_is_1_2_or_newer_and_http_redirects() -> None:
    tls = yaml.safe_load((DOCKER / "traefik-tls.yml").read_text())
    assert tls["tls"]["options"]["default"]["minVersion"] == "VersionTLS12"
    command = " ".join(_compose()["services"]["traefik"]["command"])
    assert "redirections.entrypoint.scheme=https" in command


def test_the_image_builds_with_the_ci_setup_script() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "scripts/setup.sh" in dockerfile
    assert "USER voicechat" in dockerfile
    assert "HEALTHCHECK" in dockerfile
    assert re.search(r"^FROM .* AS runtime$", dockerfile, re.MULTILINE)
