"""The limits of a settlement file: what a parser reads before it refuses the rest.

Why apart from engine/limits.py: these bound untrusted input (a file from a PSP or a bank), not
the engine's own work, and no deployment should need to tune them. A day of 1M payments is about
200 MB of Stripe CSV, so the size limit leaves room for a few days in one file.
"""

from __future__ import annotations

#: The largest settlement file read, in bytes; a bigger one is refused before it is decoded.
FILE_SIZE_BYTES_MAX = 512 * 1024 * 1024
#: The most data rows (CSV) or entries (camt.053) one file may hold.
LINES_MAX = 5_000_000
#: The longest CSV field, in characters (the csv module's own default limit is 131,072).
FIELD_LENGTH_MAX = 4096
#: The most columns a CSV header may have (Stripe adds one per metadata key asked for).
COLUMNS_MAX = 512
#: The deepest XML nesting read; camt.053 needs about 12.
XML_DEPTH_MAX = 40
#: The most XML elements one statement file may hold (about 30 per entry).
XML_ELEMENTS_MAX = 64 * LINES_MAX

assert FIELD_LENGTH_MAX < 131_072
