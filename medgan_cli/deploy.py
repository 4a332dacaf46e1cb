"""``medgan certs``, ``medgan coordinator`` and ``medgan site``: a real deployment (docs/deployment.md).

The sub-commands of each are defined beside what they drive: :mod:`server.certs`,
:mod:`server.coordinator` (the SuperLink and ``flwr run``) and :mod:`client.daemon`
(the hospital's SuperNode).
"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    from client import daemon
    from server import certs, coordinator

    for name, module, text in (("certs", certs, "TLS certificates and site keys for a deployment"),
                               ("coordinator", coordinator, "run the SuperLink, register sites, launch runs"),
                               ("site", daemon, "hospital site: check data, run the SuperNode daemon")):
        parser = sub.add_parser(name, help=text)
        module.add_arguments(parser)
        parser.set_defaults(func=module.main)
