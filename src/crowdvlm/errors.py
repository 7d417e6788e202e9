"""The user-facing failure kinds shared by every command, and the exit code of each.

Every ``crowdvlm`` command ends in one of these ways (``crowdvlm.cli.main`` maps exceptions to codes, so a
command raises rather than printing and returning a number):

=====  ==========================================================================================
code   meaning
=====  ==========================================================================================
0      done
1      the work itself failed (a model that will not load, a disk that filled up, an endpoint that
       never answered): one line on stderr naming what and where
2      bad input or bad configuration (a missing or malformed manifest, recipe or option): one line
       naming the file, the record or the key and what was expected; nothing was started
130    interrupted (Ctrl-C / SIGINT); whatever was written so far is intact and resumable
=====  ==========================================================================================

The traceback is printed only with ``crowdvlm -v <command> ...`` (or ``CROWDVLM_TRACEBACK=1``).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class CrowdvlmError(Exception):
    """Base of the errors a command reports as one line; ``exit_code`` says which kind it is."""

    exit_code: int = EXIT_FAILED


class UsageError(CrowdvlmError, ValueError):
    """Bad input or configuration, found before any work started (exit 2)."""

    exit_code = EXIT_BAD_INPUT


class RunError(CrowdvlmError, RuntimeError):
    """The work failed after it started (exit 1)."""

    exit_code = EXIT_FAILED
