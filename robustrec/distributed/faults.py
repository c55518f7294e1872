"""A rank that loses its peers ends with one line saying so and where the run can continue from.

Two ways a sharded run learns that another rank is gone: its next collective fails (gloo: "Connection closed by
peer" as soon as the dead process's sockets close; NCCL: the watchdog's error or the collective timeout), or
torchrun, which watched the other rank die, sends it SIGTERM. Both become a :class:`RankFailure` whose message is
one line; the CLI prints it and exits with code 2 (torchrun then restarts every rank when given
``--max-restarts``, and the restarted ranks continue from the last complete checkpoint).
"""

from __future__ import annotations

import contextlib
import re
import signal
from collections.abc import Callable, Iterator

import torch.distributed as dist


class RankFailure(ConnectionError):
    """This rank stopped because another rank (or torchrun) did; the message is one line. A ConnectionError (an
    OSError): one of the CLI's expected errors, reported in one line with exit code 2."""


class _Terminated(BaseException):
    """Raised in the main thread by SIGTERM (BaseException: no ``except Exception`` on the way swallows it)."""


_PEER_SIGNS = ("connection closed by peer", "connection reset by peer", "broken pipe", "timed out", "timeout",
               "nccl", "gloo", "socket", "connection refused")


def is_peer_failure(error: BaseException) -> bool:
    """Whether ``error`` comes from a collective that lost its peers (rather than from this rank's own work)."""
    if isinstance(error, dist.DistError):
        return True
    return isinstance(error, RuntimeError) and any(sign in str(error).lower() for sign in _PEER_SIGNS)


def _first_line(error: BaseException) -> str:
    """The gist of a collective's error: no source location, first sentence, at most 160 characters."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", str(error).strip().splitlines()[0] if str(error).strip() else "")
    text = text.split(". ")[0] or type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."


@contextlib.contextmanager
def peer_failures(rank: int, world: int, where_to_resume: Callable[[], str]) -> Iterator[None]:
    """Turn a lost peer or torchrun's SIGTERM inside the block into one-line :class:`RankFailure`.

    ``where_to_resume()`` says where the run can continue from (called only on failure).
    """
    def on_sigterm(signum, frame):
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    except _Terminated:
        raise RankFailure(f"rank {rank} of {world} stopped by SIGTERM (torchrun stops every rank when one "
                          f"fails); {where_to_resume()}") from None
    except Exception as error:
        if not is_peer_failure(error):
            raise
        raise RankFailure(f"rank {rank} of {world} lost contact with another rank ({_first_line(error)}); "
                          f"{where_to_resume()}") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
