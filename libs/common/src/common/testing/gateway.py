"""The nginx gateway for local runs and tests: the deployment's template, rendered with local
addresses and started as a foreground nginx owned by the caller."""

import ipaddress
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common.testing.servers import wait_for_port

REPOSITORY = Path(__file__).resolve().parents[5]
GATEWAY_DIR = REPOSITORY / "deploy" / "gateway"
TEMPLATE = GATEWAY_DIR / "ledgerline.conf.template"

MAIN_CONF = """\
{user}worker_processes 1;
daemon off;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 512; }}
http {{
    include {mime_types};
    default_type application/octet-stream;
    client_body_temp_path {run}/client_body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    include {run}/ledgerline.conf;
}}
"""

# Started by root, nginx runs its workers as `nobody`, who cannot write the caller's run folder
# (pytest makes its folders 0700): a request body past its memory buffer, spooled to a file in
# `client_body`, was then a 500 from the gateway itself. The workers run as the caller instead.
WORKER_USER = "user root;\n" if os.geteuid() == 0 else ""


# One service's API: its address (`host:port`), or the addresses of its replicas.
Upstream = str | Sequence[str]


@dataclass
class GatewayConfig:
    """What differs between one local gateway and another: ports, upstreams, limits."""

    port: int
    user_upstream: Upstream
    invoice_upstream: Upstream
    # Port 9 (discard) has nothing listening: a gateway started without a payment service
    # answers its paths with the usual 503 problem instead of refusing to start.
    payment_upstream: Upstream = "127.0.0.1:9"
    email_upstream: Upstream = "127.0.0.1:9"
    sync_upstream: Upstream = "127.0.0.1:9"
    api_rate: str = "50r/s"
    api_burst: int = 100
    auth_rate: str = "10r/s"
    auth_burst: int = 20
    pay_rate: str = "5r/s"
    pay_burst: int = 10
    # Per access token, on top of the address's API budget.
    user_rate: str = "20r/s"
    user_burst: int = 40
    # /.well-known/jwks.json and /health-check, per address.
    public_rate: str = "10r/s"
    public_burst: int = 20
    # Peers whose X-Forwarded-For names the client (addresses or CIDR ranges); none by default.
    trusted_proxies: tuple[str, ...] = ()
    # Origins other than the gateway's own allowed to read answers (`scheme://host[:port]`).
    cors_origins: tuple[str, ...] = ()
    static_root: Path = field(default_factory=lambda: GATEWAY_DIR / "static")

    def variables(self, run_dir: Path) -> dict[str, str]:
        return {
            "GATEWAY_LISTEN": f"127.0.0.1:{self.port}",
            "USER_UPSTREAM": upstream_servers(self.user_upstream),
            "INVOICE_UPSTREAM": upstream_servers(self.invoice_upstream),
            "PAYMENT_UPSTREAM": upstream_servers(self.payment_upstream),
            "EMAIL_UPSTREAM": upstream_servers(self.email_upstream),
            "SYNC_UPSTREAM": upstream_servers(self.sync_upstream),
            "GATEWAY_API_RATE": self.api_rate,
            "GATEWAY_API_BURST": str(self.api_burst),
            "GATEWAY_AUTH_RATE": self.auth_rate,
            "GATEWAY_AUTH_BURST": str(self.auth_burst),
            "GATEWAY_PAY_RATE": self.pay_rate,
            "GATEWAY_PAY_BURST": str(self.pay_burst),
            "GATEWAY_USER_RATE": self.user_rate,
            "GATEWAY_USER_BURST": str(self.user_burst),
            "GATEWAY_PUBLIC_RATE": self.public_rate,
            "GATEWAY_PUBLIC_BURST": str(self.public_burst),
            "GATEWAY_REAL_IP_FROM": real_ip_from(self.trusted_proxies),
            "GATEWAY_CORS_ORIGINS": cors_origin_entries(self.cors_origins),
            "GATEWAY_STATIC_ROOT": str(self.static_root),
            "GATEWAY_ACCESS_LOG": str(run_dir / "access.log"),
        }


# What nginx takes as a server's address (`host:port`, `unix:/path`): one word, nothing that
# would end the directive or the block.
ADDRESS = re.compile(r"[^\s;{}'\"]+")


def upstream_servers(upstream: Upstream) -> str:
    """The value of an upstream's placeholder, which the template writes as
    `server ${<NAME>_UPSTREAM};`: one address, or several (a list, or one string of addresses
    separated by spaces) joined by `; server `, so that nginx reads one `server` line per
    replica and balances among them."""
    addresses = upstream.split() if isinstance(upstream, str) else list(upstream)
    if not addresses:
        raise ValueError("an upstream needs at least one address")
    for address in addresses:
        if not ADDRESS.fullmatch(address):
            raise ValueError(f"not an upstream address (host:port): {address!r}")
    return "; server ".join(addresses)


ORIGIN = re.compile(r"https?://[a-z0-9.-]+(:[0-9]{1,5})?")


def real_ip_from(trusted_proxies: tuple[str, ...]) -> str:
    """`set_real_ip_from` directives, one per trusted proxy; each must be an address or range."""
    # ip_network refuses anything else, so nothing but an address reaches the configuration.
    networks = [ipaddress.ip_network(proxy, strict=False) for proxy in trusted_proxies]
    return " ".join(f"set_real_ip_from {network};" for network in networks)


def cors_origin_entries(origins: tuple[str, ...]) -> str:
    """The CORS map's entries, one per allowed origin (lower case, no path, no `*`)."""
    for origin in origins:
        if not ORIGIN.fullmatch(origin):
            raise ValueError(f"not an origin (scheme://host[:port], lower case): {origin!r}")
    return " ".join(f'"{origin}" 1;' for origin in origins)


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        raise RuntimeError("nginx is not installed: `make setup` installs Debian's nginx-light")
    return found


def render(config: GatewayConfig, run_dir: Path) -> Path:
    """Write the gateway's nginx.conf into run_dir (the deployment template, filled in)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    site = TEMPLATE.read_text()
    for name, value in config.variables(run_dir).items():
        site = site.replace("${" + name + "}", value)
    if "${" in site:
        raise ValueError("the gateway template has a placeholder this renderer does not fill")
    (run_dir / "ledgerline.conf").write_text(site)
    main = run_dir / "nginx.conf"
    main.write_text(
        MAIN_CONF.format(user=WORKER_USER, run=run_dir, mime_types="/etc/nginx/mime.types")
    )
    return main


def start_gateway(config: GatewayConfig, run_dir: Path) -> subprocess.Popen[bytes]:
    """Start nginx in the foreground with the rendered configuration; wait until it listens."""
    main = render(config, run_dir)
    binary = nginx_binary()
    check = subprocess.run(
        [binary, "-t", "-q", "-p", str(run_dir), "-c", str(main), "-e", str(run_dir / "error.log")],
        capture_output=True,
        check=False,
    )
    if check.returncode != 0:
        raise RuntimeError(f"the gateway configuration is invalid: {check.stderr.decode()}")
    process = subprocess.Popen(
        [binary, "-p", str(run_dir), "-c", str(main), "-e", str(run_dir / "error.log")],
        env={**os.environ},
    )
    wait_for_port("127.0.0.1", config.port)
    return process
