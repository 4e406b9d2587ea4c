"""`hybrid certs init` and `hybrid certs issue`: a local CA and leaf certificates for mutual TLS."""

from __future__ import annotations

import argparse
from pathlib import Path

from hybrid.security import certs


def cmd_certs_init(args: argparse.Namespace) -> int:
    folder = Path(args.dir).expanduser()
    leaves = certs.init_ca_folder(folder, sans=args.san, force=args.force)
    server, client = leaves
    ca = folder / certs.CA_CERT_FILE
    print(f"CA          {ca}  (its key {folder / certs.CA_KEY_FILE} signs new leaves: keep it off servers)")
    print(f"server      {server.cert}  {server.key}  ({', '.join([*certs.LOOPBACK_SANS, *args.san])})")
    print(f"client      {client.cert}  {client.key}")
    print("serve with:   --tls-cert", server.cert, "--tls-key", server.key, "--tls-ca", ca)
    print("call with:    --tls-cert", client.cert, "--tls-key", client.key, "--tls-ca", ca)
    return 0


def cmd_certs_issue(args: argparse.Namespace) -> int:
    folder = Path(args.ca_dir).expanduser()
    leaf = certs.issue(
        folder,
        args.name,
        sans=args.san,
        server=not args.client,
        valid_days=args.days,
        out=Path(args.out).expanduser() if args.out else None,
    )
    print(f"{leaf.name}  {leaf.cert}  {leaf.key}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser("certs", help="a local CA and certificates for mutual TLS").add_subparsers(
        dest="certs_command", required=True
    )
    init = group.add_parser(
        "init",
        help="make a CA in DIR, a server certificate (localhost, 127.0.0.1, ::1 and --san) and a client certificate",
    )
    init.add_argument("dir", help="folder for ca.pem, ca.key, server.pem/.key and client.pem/.key (made mode 0700)")
    init.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="NAME",
        help="another DNS name or IP address the server certificate answers to (repeat it)",
    )
    init.add_argument("--force", action="store_true", help="replace a CA already in DIR")
    init.set_defaults(func=cmd_certs_init)

    issue = group.add_parser("issue", help="sign another leaf certificate with the CA of --ca-dir")
    issue.add_argument("name", help="the leaf's name: its common name and files NAME.pem and NAME.key")
    issue.add_argument("--ca-dir", required=True, help="the folder `hybrid certs init` made")
    issue.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="NAME",
        help="DNS name or IP address the server answers to (repeat it; NAME itself when none)",
    )
    issue.add_argument("--client", action="store_true", help="a client certificate only (not usable to serve)")
    issue.add_argument("--days", type=int, default=certs.LEAF_VALID_DAYS, help="how long it is valid")
    issue.add_argument("--out", help="folder for the files (default: --ca-dir)")
    issue.set_defaults(func=cmd_certs_issue)
