"""Our nftables table (family inet, named by the store's settings; other tables are never touched).

    table inet minicontainer {
        set bridges    { type ifname }                          our bridges
        chain prerouting  nat, dstnat    fib daddr type local jump ports
        chain output      nat, -100      fib daddr type local jump ports
        chain ports                      one DNAT rule per published port    comment "ctr:<container id>"
        chain postrouting nat, srcnat    masquerade, per network             comment "net:<network id>"
        chain forward     filter         isolation, per network              comment "net:<network id>"
        chain guard       filter, raw    iifname @bridges ip daddr/saddr 127.0.0.0/8 drop
    }

Per network: outbound masquerade of the subnet (`ip saddr S oifname != B`), masquerade of loopback
sources entering the bridge (a published port reached at 127.0.0.1 arrives with source 127.0.0.1,
which the container could not answer; together with route_localnet=1 on our bridges, set by
minirun.network.bridge), and `iifname B oifname @bridges oifname != B drop`: no traffic between two of
our networks (Docker's DOCKER-ISOLATION chains). `guard` is what makes route_localnet safe: with it on, the
host would accept packets *from* a container addressed to 127.0.0.0/8 and so expose services bound to the
host's loopback (CVE-2020-8558 in kube-proxy); such packets are dropped before conntrack sees them,
while replies to a published port reached at 127.0.0.1 still arrive addressed to the gateway and are
un-NATed afterwards. Rules carry their owner in a comment; removal lists the
table (with handles) and deletes by handle the rules of that owner only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from minirun.network.nft import Nft

if TYPE_CHECKING:
    from minirun.network.ports import PortMapping


def _layout(table: str) -> str:
    t = f"inet {table}"
    return f"""add table {t}
add set {t} bridges {{ type ifname; }}
add chain {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
add chain {t} output {{ type nat hook output priority -100; policy accept; }}
add chain {t} ports
add chain {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}
add chain {t} forward {{ type filter hook forward priority filter; policy accept; }}
add chain {t} guard {{ type filter hook prerouting priority raw; policy accept; }}
add rule {t} prerouting fib daddr type local jump ports
add rule {t} output fib daddr type local jump ports
add rule {t} guard iifname @bridges ip daddr 127.0.0.0/8 counter drop
add rule {t} guard iifname @bridges ip saddr 127.0.0.0/8 counter drop
"""


def network_tag(network_id: str) -> str:
    return f"net:{network_id}"


def container_tag(container_id: str) -> str:
    return f"ctr:{container_id}"


def _ensure_table(nft: Nft, table: str) -> str:
    """The commands that create the table, or "" when it exists (callers hold the network lock)."""
    return "" if nft.list_json(f"table inet {table}") is not None else _layout(table)


def add_network(nft: Nft, table: str, network_id: str, bridge: str, subnet: str) -> None:
    t, tag = f"inet {table}", network_tag(network_id)
    nft.run(
        _ensure_table(nft, table)
        + f"""add element {t} bridges {{ "{bridge}" }}
add rule {t} postrouting ip saddr {subnet} oifname != "{bridge}" masquerade comment "{tag}"
add rule {t} postrouting oifname "{bridge}" ip saddr 127.0.0.0/8 masquerade comment "{tag}"
add rule {t} forward iifname "{bridge}" oifname @bridges oifname != "{bridge}" drop comment "{tag}"
"""
    )


def remove_network(nft: Nft, table: str, network_id: str, bridge: str) -> None:
    remove_tagged(nft, table, network_tag(network_id))
    objects = nft.list_json(f"set inet {table} bridges") or []
    elements = next((o["set"].get("elem", []) for o in objects if "set" in o), [])
    if bridge in elements:
        nft.run(f'delete element inet {table} bridges {{ "{bridge}" }}')


def add_ports(nft: Nft, table: str, container_id: str, address: str, mappings: list[PortMapping]) -> None:
    if not mappings:
        return
    t, tag = f"inet {table}", container_tag(container_id)
    script = _ensure_table(nft, table)
    for m in mappings:
        match = "" if m.host_ip == "0.0.0.0" else f"ip daddr {m.host_ip} "
        script += (
            f"add rule {t} ports meta nfproto ipv4 {match}{m.protocol} dport {m.host_port} "
            f'dnat ip to {address}:{m.container_port} comment "{tag}"\n'
        )
    nft.run(script)


def tagged_rules(nft: Nft, table: str) -> list[tuple[str, int, str]]:
    """(chain, handle, comment) of every rule of ours that carries an owner."""
    objects = nft.list_json(f"table inet {table}") or []
    return [
        (o["rule"]["chain"], o["rule"]["handle"], o["rule"]["comment"])
        for o in objects
        if "rule" in o and o["rule"].get("comment")
    ]


def remove_tagged(nft: Nft, table: str, tag: str) -> int:
    """Delete every rule whose comment is `tag`; how many there were."""
    doomed = [(chain, handle) for chain, handle, comment in tagged_rules(nft, table) if comment == tag]
    if doomed:
        nft.run("".join(f"delete rule inet {table} {chain} handle {handle}\n" for chain, handle in doomed))
    return len(doomed)


def remove_table_if_unused(nft: Nft, table: str) -> bool:
    """Delete the table once no rule of any owner and no bridge is left in it."""
    objects = nft.list_json(f"table inet {table}")
    if objects is None:
        return False
    owned = any("rule" in o and o["rule"].get("comment") for o in objects)
    bridges = any("set" in o and o["set"].get("elem") for o in objects)
    if owned or bridges:
        return False
    nft.run(f"delete table inet {table}")
    return True
