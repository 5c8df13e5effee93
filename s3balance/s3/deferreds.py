"""
Waiting on Deferreds without disturbing them: a store call awaited to its
end through a cancellation (L{uncancelled}), a shared Deferred observed
without taking its result (L{observe}), and a Failure raised without a
reference cycle (L{raise_failure}).
"""

from __future__ import annotations

from typing import NoReturn, TypeVar, Union

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

_T = TypeVar("_T")


async def uncancelled(work: Deferred[_T]) -> _T:
    """
    The result of C{work}, awaited to its end.  A handler cancelled meanwhile
    (its client left, see L{s3balance.s3.gateway.Gateway.handle}) goes on
    waiting instead of cancelling C{work}: a transaction handed to the
    store's threads runs on whatever happens here, and its caller must know
    whether it committed (a commit that succeeded must not be cleaned up as
    a failed write).  The cancellation is absorbed.
    """
    outcome: list[Union[_T, Failure]] = []
    waiter: list[Deferred[None]] = []

    def done(result: Union[_T, Failure]) -> None:
        outcome.append(result)
        if waiter and not waiter[0].called:
            waiter[0].callback(None)

    work.addBoth(done)
    while not outcome:
        waiter[:] = [Deferred()]
        try:
            await waiter[0]
        except CancelledError:
            continue
    result = outcome.pop()
    if isinstance(result, Failure):
        raise_failure(result)
    return result


def raise_failure(failure: Failure) -> NoReturn:
    """
    Raise C{failure}'s exception.  Not with C{failure.raiseException()}: its
    frame, in the exception's traceback, holds the failure, which holds the
    exception (a reference cycle through every frame of the upload).
    """
    error = failure.value
    del failure
    try:
        raise error
    finally:
        del error


def observe(shared: Deferred[_T]) -> Deferred[_T]:
    """
    A Deferred with C{shared}'s result that leaves C{shared} alone: awaiting
    a Deferred directly would take its result from later callbacks, and
    cancelling the wait would fail it for everybody.
    """
    copy: Deferred[_T] = Deferred()

    def forward(result: Union[_T, Failure]) -> Union[_T, Failure]:
        if not copy.called:
            copy.callback(result)
        return result

    shared.addBoth(forward)
    return copy
