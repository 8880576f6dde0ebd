"""How a curation run is split over processes or machines: shard K of N takes the inputs whose id hashes to it.

A module of its own, with nothing but the standard library, so that ``crystalflow curate --shard K/N`` is read
without loading the curation (NumPy, pandas, ASE).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def key_hash(key: str) -> int:
    """A stable 64-bit hash of ``key`` (the same in every process and on every machine, unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (from 1) of ``count``: the inputs whose id hashes to it.

    A hash of the id rather than contiguous chunks of the sorted input: each shard decides alone, without a first
    walk to count the inputs; the split is the same on every machine, balanced in expectation even where slow
    structures cluster by id; and adding files to a mirror moves no input to another shard, so a shard's
    journal stays valid.
    """

    index: int = 1
    count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count:
            raise ValueError(f"shard {self.index}/{self.count}: K/N needs 1 <= K <= N")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"K/N"`` → ``Shard(K, N)``; ``ValueError`` for anything else."""
        index, slash, count = text.partition("/")
        if not slash:
            raise ValueError(f"{text!r} is not K/N")
        return cls(int(index), int(count))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def name(self) -> str:
        return f"{self.index}-of-{self.count}"

    def owns(self, structure_id: str) -> bool:
        return self.count == 1 or key_hash(structure_id) % self.count == self.index - 1
