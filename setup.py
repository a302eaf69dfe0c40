"""The one compiled part: batch XXH3 hashing without the GIL (seawall/blockstore/_hashes.c).

Everything else is in pyproject.toml. The extension is optional: without a C compiler or Debian's
libxxhash0 the install goes on, and ``seawall.blockstore.fasthash`` hashes in Python instead (the
same digests, at about half a seed's speed on two cores).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "seawall.blockstore._hashes",
            sources=["seawall/blockstore/_hashes.c"],
            # Debian ships the library without a development link: name the runtime file itself.
            extra_link_args=["-l:libxxhash.so.0"],
            optional=True,
        )
    ]
)
