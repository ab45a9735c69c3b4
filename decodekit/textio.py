"""Reading user-supplied text: files, standard input and command-line strings.

Every problem becomes one :class:`~decodekit.errors.ConfigError` (or the error class the
caller names) whose message says which file or argument is at fault and why::

    config file examples/x.toml is not UTF-8 text (byte 0xff at offset 3)
    prompts file data/ is a directory
"""

from __future__ import annotations

import sys
from pathlib import Path

from decodekit.errors import ConfigError, DecodekitError

__all__ = ["STDIN", "decode_utf8", "read_text_file", "require_utf8"]

#: The file name that means standard input where a command allows it (``--prompts-file -``).
STDIN = "-"


def decode_utf8(data: bytes, what: str) -> str:
    """Decode UTF-8 bytes; a leading byte-order mark is dropped.

    Parameters
    ----------
    data : bytes
    what : str
        Names the source in the error, e.g. ``"config file a.toml"``.

    Raises
    ------
    ConfigError
        The bytes are not UTF-8; the message gives the first bad byte and its offset.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None
    return text.removeprefix("\ufeff")


def read_text_file(path: Path, kind: str, *, allow_stdin: bool = False) -> str:
    """Read a whole UTF-8 text file.

    Parameters
    ----------
    path : Path
    kind : str
        What the file is, for messages: ``"config"``, ``"prompts"``, ``"--schema"``, ...
    allow_stdin : bool
        Read standard input when ``path`` is ``-``.

    Raises
    ------
    ConfigError
        The file is missing, a directory, not readable, or not UTF-8 text.
    """
    if allow_stdin and str(path) == STDIN:
        return decode_utf8(sys.stdin.buffer.read(), f"{kind} from standard input")
    where = f"{kind} file {path}"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{kind} file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{where} is a directory") from None
    except PermissionError:
        raise ConfigError(f"{where} is not readable (permission denied)") from None
    except OSError as exc:  # a FIFO gone away, an I/O error, ...: still one line
        raise ConfigError(f"{where} cannot be read: {exc.strerror or exc}") from None
    return decode_utf8(data, where)


def require_utf8(text: str, what: str, error: type[DecodekitError] = ConfigError) -> str:
    r"""Return ``text`` if it can be written as UTF-8, else raise ``error``.

    On Linux, command-line bytes that are not UTF-8 reach Python as lone surrogates
    (``b"\xff"`` becomes ``"\udcff"``); they would fail much later, deep in a tokenizer.

    Parameters
    ----------
    text : str
    what : str
        Names the argument in the error, e.g. ``"the PROMPT argument"``.
    error : type of DecodekitError
        The exception class to raise.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        # 0xDC80..0xDCFF is how the surrogateescape handler carries one undecodable byte
        found = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
        raise error(f"{what} is not valid UTF-8 text ({found} at position {exc.start})") from None
    return text
