"""Founding a network: the genesis, its founding cell, and my first key bundle.

The rule it keeps: the client keeps the network only if the server
registered exactly the genesis and founding cell it signed.
"""

from __future__ import annotations

from dataclasses import replace

from client import api, verify
from client.errors import ClientError
from client.sdk import Client
from crypto.encoding import b32e
from crypto.network import Policy, make_genesis
from crypto.roster import GroupRules, make_group


async def create_network(client: Client, name: str, policy: Policy) -> dict[str, str]:
    """Sign a genesis and the founding cell's create event; I become the steward."""
    if client.state.genesis is not None:
        raise ClientError(
            "already_in_network",
            "This keystore already belongs to a network; nothing was changed. "
            "Use another --home to found a second one.",
        )
    now = client.now()
    identity = client.state.identity
    genesis = make_genesis(identity, policy, now)
    network = genesis.network_id
    bundle = client.key_bundle(network, now)
    cell = make_group(identity, network, now, [bundle], rules=GroupRules.of(genesis))
    created = api.parse_network_created(
        await client.call(api.create_network(genesis.statement, cell.statement, bundle.statement))
    )
    if created.network_id != b32e(network) or created.cell_id != b32e(cell.group_id):
        raise verify.fail("the server registered a network other than the one sent")
    client.save(
        replace(
            client.state,
            genesis=genesis,
            network_name=name,
            key_bundle=bundle,
            cell_id=cell.group_id,
            chain=(),
        )
    )
    return {"network_id": created.network_id, "cell_id": created.cell_id}
