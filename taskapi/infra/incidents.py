"""An outage of a store as one incident: one log line when it is first seen, one when the store
answers again, however many calls failed in between."""

from __future__ import annotations

import logging


class Incident:
    """Whether `store` is known to be down, logging only the changes of that state."""

    def __init__(self, log: logging.Logger, store: str, meanwhile: str) -> None:
        self.log = log
        self.store = store
        self.meanwhile = meanwhile
        self.open = False

    def failed(self, error: BaseException) -> None:
        """A call failed because the store is unreachable: logged if it opens the incident."""
        if not self.open:
            self.open = True
            self.log.error(
                "%s unavailable: %s: %s; %s",
                self.store,
                type(error).__name__,
                str(error).splitlines()[0] if str(error) else "",
                self.meanwhile,
            )

    def recovered(self) -> None:
        """The store answered: logged if it closes an incident."""
        if self.open:
            self.open = False
            self.log.warning("%s available again", self.store)
