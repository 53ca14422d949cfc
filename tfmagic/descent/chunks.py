"""What a run yields, chunk by chunk, and a driver that runs such a generator to its end."""

from dataclasses import dataclass

from tfmagic.descent.status import Status


def drain(chunks):
    """Run a generator of chunks to its end without pausing; returns its return value."""
    while True:
        try:
            next(chunks)
        except StopIteration as done:
            return done.value


@dataclass
class Chunk:
    """What one chunk did, handed to observers."""

    start: int  # index of its first step in the history
    rows: dict  # column -> numpy array of this chunk's recorded steps
    status: Status
    steps_per_second: float
    epochs: tuple = ()  # the epoch rows this chunk closed (data.EpochLog), in order
