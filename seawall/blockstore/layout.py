"""Where every object of a repository lives in its store: one function per kind of key.

Object layout in the store (every data object sealed, see codec.py)::

    packs/<xx>/<pack id>       sealed chunks back to back, ~8 MiB (PACK_TARGET)
    index/<xx>/<pack id>       the pack's chunk list: chunk id -> offset, length
    tables/<xx>/<table id>     table parts and layers (tableformat.py), content-addressed
    points/<vm>/<point>.json   the manifest: written last, so a listed point is complete
    verified/<vm>/<point>.json marker written after a clean verify ("latest verified" is a listing)
    corrupt/<vm>/<point>.json  marker written when a verify finds a damaged chunk (damage.py)
    damage/chunks.json         damaged chunks not yet repaired (damage.py)
    configs/<vm>/<point>       the VM's configuration at snapshot time, sealed (configs.py); written
                               before the manifest, which records that it exists
    sessions/<session>.json    lease + resume journal of a ship in progress
    gc/condemned.json          objects GC found unreferenced, and since when

Why packs: at 1 % change of 1 GiB with scattered 4 KiB writes a point holds ~2,600 chunks. One
object per chunk would be 2,600 PUTs per cycle per GiB (S3 allows ~3,500 PUT/s per prefix);
packed, it is 2 packs + 2 indexes + 2-4 table objects + 1 manifest.

These names are the on-disk format: existing replicas are read through them, so they never change.
"""

from __future__ import annotations

CONDEMNED_KEY = "gc/condemned.json"


def pack_key(pack: bytes) -> str:
    h = pack.hex()
    return f"packs/{h[:2]}/{h}"


def index_key(pack: bytes) -> str:
    h = pack.hex()
    return f"index/{h[:2]}/{h}"


def table_key(oid: bytes) -> str:
    h = oid.hex()
    return f"tables/{h[:2]}/{h}"


def point_key(vm: str, point_id: str) -> str:
    return f"points/{vm}/{point_id}.json"


def verified_key(vm: str, point_id: str) -> str:
    return f"verified/{vm}/{point_id}.json"


def config_key(vm: str, point_id: str) -> str:
    return f"configs/{vm}/{point_id}"


def session_key(session: str) -> str:
    return f"sessions/{session}.json"


def key_tail_bytes(key: str) -> bytes:
    """The id a pack or index key ends in (raises ValueError for a name that is not hex)."""
    return bytes.fromhex(key.rsplit("/", 1)[-1])


DAMAGE_KEY = "damage/chunks.json"
"""Chunks a scrub found damaged and not yet repaired: never a dedup target; a ship that reads the
same content from the source writes it back in place (``damage.py``)."""


def corrupt_key(vm: str, point_id: str) -> str:
    """Marker of a point a verify found damaged: never listed as verified while it exists."""
    return f"corrupt/{vm}/{point_id}.json"


def scrub_key(vm: str) -> str:
    """When every point of ``vm`` was last read in full (the periodic scrub's clock)."""
    return f"scrubbed/{vm}.json"
