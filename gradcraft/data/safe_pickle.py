"""A restricted reader for pickle files that hold only plain data (CIFAR "python" batches).

Why not ``pickle.load``?  Unpickling runs code: a ``GLOBAL`` opcode imports any callable and
``REDUCE`` calls it, so a crafted file is a program. Even ``pickle.Unpickler`` with a
``find_class`` that admits only ``numpy.core.multiarray._reconstruct`` still lets the file
call that function and ``ndarray.__setstate__`` with arguments of its choosing, inside C code
that was never written to parse hostile input.

This module therefore never calls anything named by the file. It is a small interpreter for
the subset of the pickle protocols 2–5 that plain data use (numbers, strings, bytes, ``None``,
booleans, tuples, lists, dicts, memo references) plus numeric NumPy arrays. The globals an
array pickle names — ``numpy.core.multiarray._reconstruct`` / ``numpy._core...``,
``numpy.ndarray``, ``numpy.dtype``, ``numpy._core.numeric._frombuffer``, ``_codecs.encode`` and
``builtins.bytes`` (how protocol 2 writes ``bytes`` under Python 3) — become inert tokens. A ``REDUCE`` or
``BUILD`` on a token is interpreted here, by our rules:

* a dtype must be a plain numeric or boolean code (``u1``, ``i4``, ``f8``, …) with a byte order;
  structured, object and string dtypes are refused;
* ``bytes()`` with no argument (how protocol 2 writes ``b""``) gives ``b""``;
* an array is built with ``numpy.frombuffer`` from raw bytes whose length must equal
  ``prod(shape) · itemsize`` — checked *before* anything is allocated, so a header cannot
  promise gigabytes; object arrays (whose data would be a list of pickled objects) are refused.

Every other global, ``NEWOBJ``, ``INST``, ``OBJ``, persistent ids, extension codes, sets and any
opcode not listed raise :class:`~gradcraft.data.DatasetError`, as does any malformed or
truncated stream. Memo references are resolved once per object, so a file that nests shared
references cannot blow up the conversion time.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import numpy as np

from gradcraft.data._io import read_bytes
from gradcraft.data.errors import DatasetError

__all__ = ["load_pickle", "loads_pickle"]

_MAX_DEPTH = 64
_NUMERIC_KINDS = "biuf"


class _Global:
    """An inert stand-in for one of the few allowed globals."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind


_ALLOWED_GLOBALS: dict[tuple[str, str], str] = {
    ("numpy.core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
    ("numpy.core.numeric", "_frombuffer"): "frombuffer",
    ("numpy._core.numeric", "_frombuffer"): "frombuffer",
    ("_codecs", "encode"): "encode",
    ("__builtin__", "bytes"): "bytes",
    ("builtins", "bytes"): "bytes",
}


class _PendingDtype:
    """``numpy.dtype(code, align, copy)`` waiting for its ``BUILD`` (byte order)."""

    __slots__ = ("code", "dtype")

    def __init__(self, code: str) -> None:
        self.code = code
        self.dtype: np.dtype | None = None

    def finish(self, order: str) -> np.dtype:
        if order not in ("<", ">", "|", "="):
            raise DatasetError(f"Expected a dtype byte order in '<>|='. Received: {order!r}")
        dt = np.dtype(self.code)
        if dt.kind not in _NUMERIC_KINDS or dt.fields is not None or dt.subdtype is not None:
            raise DatasetError(f"Expected a numeric dtype. Received: {self.code!r}")
        self.dtype = dt.newbyteorder(order) if order in "<>" and dt.itemsize > 1 else dt
        return self.dtype

    def resolved(self) -> np.dtype:
        return self.dtype if self.dtype is not None else self.finish("=")


class _PendingArray:
    """``_reconstruct(ndarray, (0,), b'b')`` waiting for its ``BUILD`` (shape, dtype, data)."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None


def _text(value: Any, what: str) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            pass
    elif isinstance(value, str):
        return value
    raise DatasetError(f"Expected a string for {what}. Received: {type(value).__name__}")


def _numeric_dtype(code: Any) -> _PendingDtype:
    text = _text(code, "a dtype code")
    try:
        dt = np.dtype(text) if len(text) <= 4 and text.isascii() and text.isalnum() else None
    except TypeError:
        dt = None
    if dt is None or dt.kind not in _NUMERIC_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise DatasetError(f"Expected a numeric NumPy dtype code (u1, i4, f4, …). Received: {text!r}")
    return _PendingDtype(text)


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, tuple) or len(value) > 32 or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        raise DatasetError(f"Expected an array shape (a tuple of non-negative ints). Received: {value!r}")
    return value


def _array_from_bytes(raw: Any, dtype: np.dtype, shape: tuple[int, ...], fortran: bool) -> np.ndarray:
    if isinstance(raw, list):
        raise DatasetError("Expected raw array bytes. Received: an object array (refused: it holds objects)")
    if not isinstance(raw, (bytes, bytearray)):
        raise DatasetError(f"Expected raw array bytes. Received: {type(raw).__name__}")
    count = 1
    for d in shape:
        count *= d
    if len(raw) != count * dtype.itemsize:
        raise DatasetError(
            f"Expected {count * dtype.itemsize} bytes for an array of shape {shape} and dtype {dtype}. "
            f"Received: {len(raw)} bytes"
        )
    arr = np.frombuffer(bytes(raw), dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return np.ascontiguousarray(arr.astype(dtype.newbyteorder("="), copy=True))


def _reduce(func: Any, args: Any) -> Any:
    if not isinstance(func, _Global) or not isinstance(args, tuple):
        raise DatasetError("Expected REDUCE on an allowed global. Received: a call of a non-callable")
    if func.kind == "encode":
        if len(args) != 2 or not isinstance(args[0], str) or args[1] not in ("latin1", "latin-1"):
            raise DatasetError(f"Expected _codecs.encode(str, 'latin1'). Received: arguments {args!r:.80}")
        return args[0].encode("latin-1")
    if func.kind == "bytes":  # protocol 2 writes b"" as bytes()
        if args != ():
            raise DatasetError(f"Expected bytes() without arguments. Received: arguments {args!r:.80}")
        return b""
    if func.kind == "dtype":
        if not 1 <= len(args) <= 3:
            raise DatasetError(f"Expected numpy.dtype(code, align, copy). Received: {len(args)} arguments")
        return _numeric_dtype(args[0])
    if func.kind == "reconstruct":
        if len(args) != 3 or not isinstance(args[0], _Global) or args[0].kind != "ndarray":
            raise DatasetError("Expected _reconstruct(numpy.ndarray, shape, code). Received: other arguments")
        return _PendingArray()
    if func.kind == "frombuffer":
        if len(args) != 4 or not isinstance(args[1], _PendingDtype) or args[3] not in ("C", "F"):
            raise DatasetError("Expected _frombuffer(buffer, dtype, shape, order). Received: other arguments")
        return _array_from_bytes(args[0], args[1].resolved(), _shape(args[2]), args[3] == "F")
    raise DatasetError(f"Expected a callable global. Received: a call of {func.kind}")


def _build(obj: Any, state: Any) -> None:
    if isinstance(obj, _PendingDtype):
        if not isinstance(state, tuple) or len(state) < 2:
            raise DatasetError("Expected a dtype state tuple. Received: other data")
        if len(state) > 4 and (state[3] is not None or state[4] is not None):
            raise DatasetError("Expected a plain numeric dtype. Received: a structured dtype (refused)")
        obj.finish(_text(state[1], "a byte order"))
        return
    if isinstance(obj, _PendingArray):
        if not isinstance(state, tuple) or len(state) != 5 or not isinstance(state[2], _PendingDtype):
            raise DatasetError("Expected an array state (version, shape, dtype, fortran, data). "
                               "Received: other data")
        if obj.array is not None:
            raise DatasetError("Expected one BUILD per array. Received: a second one")
        obj.array = _array_from_bytes(state[4], state[2].resolved(), _shape(state[1]), bool(state[3]))
        return
    raise DatasetError(f"Expected BUILD on an array or dtype. Received: BUILD on {type(obj).__name__}")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise DatasetError(
                f"Expected {n} more bytes at offset {self.pos}. Received: the stream ends at {len(self.data)}"
            )
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def line(self) -> bytes:
        end = self.data.find(b"\n", self.pos)
        if end < 0 or end - self.pos > 256:
            raise DatasetError(f"Expected a newline-terminated name at offset {self.pos}. Received: none")
        out = self.data[self.pos:end]
        self.pos = end + 1
        return out

    def u(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size))[0]


def _interpret(data: bytes) -> Any:
    r = _Reader(data)
    stack: list[Any] = []
    marks: list[int] = []
    memo: dict[int, Any] = {}

    def pop_mark() -> list[Any]:
        if not marks:
            raise DatasetError("Expected a MARK before this opcode. Received: none")
        start = marks.pop()
        items = stack[start:]
        del stack[start:]
        return items

    def push_global(module: str, name: str) -> None:
        kind = _ALLOWED_GLOBALS.get((module, name))
        if kind is None:
            raise DatasetError(
                f"Expected only plain data and numeric arrays. Received: a reference to "
                f"{module}.{name} (refused: unpickling it could run code)"
            )
        stack.append(_Global(kind))

    while True:
        op = r.take(1)[0]
        if op == 0x80:    # PROTO
            proto = r.take(1)[0]
            if proto > 5:
                raise DatasetError(f"Expected pickle protocol <= 5. Received: {proto}")
        elif op == 0x95:  # FRAME
            r.take(8)
        elif op == 0x2E:  # STOP
            if len(stack) != 1 or marks:
                raise DatasetError("Expected exactly one object at STOP. Received: an unbalanced stream")
            return stack[0]
        elif op == 0x28:  # MARK
            marks.append(len(stack))
        elif op == 0x7D:  # EMPTY_DICT
            stack.append({})
        elif op == 0x5D:  # EMPTY_LIST
            stack.append([])
        elif op == 0x29:  # EMPTY_TUPLE
            stack.append(())
        elif op == 0x74:  # TUPLE
            stack.append(tuple(pop_mark()))
        elif op in (0x85, 0x86, 0x87):  # TUPLE1..3
            n = op - 0x84
            if len(stack) < n or (marks and len(stack) - n < marks[-1]):
                raise DatasetError(f"Expected {n} items on the stack for TUPLE{n}. Received: fewer")
            items = tuple(stack[len(stack) - n:])
            del stack[len(stack) - n:]
            stack.append(items)
        elif op == 0x6C:  # LIST
            stack.append(pop_mark())
        elif op == 0x64:  # DICT
            items = pop_mark()
            stack.append(_pairs({}, items))
        elif op == 0x61:  # APPEND
            value = stack.pop()
            _target(stack, list).append(value)
        elif op == 0x65:  # APPENDS
            items = pop_mark()
            _target(stack, list).extend(items)
        elif op == 0x73:  # SETITEM
            value = stack.pop()
            key = stack.pop()
            _pairs(_target(stack, dict), [key, value])
        elif op == 0x75:  # SETITEMS
            items = pop_mark()
            _pairs(_target(stack, dict), items)
        elif op == 0x4E:  # NONE
            stack.append(None)
        elif op == 0x88:  # NEWTRUE
            stack.append(True)
        elif op == 0x89:  # NEWFALSE
            stack.append(False)
        elif op == 0x4A:  # BININT
            stack.append(r.u("<i"))
        elif op == 0x4B:  # BININT1
            stack.append(r.take(1)[0])
        elif op == 0x4D:  # BININT2
            stack.append(r.u("<H"))
        elif op in (0x8A, 0x8B):  # LONG1, LONG4
            n = r.take(1)[0] if op == 0x8A else r.u("<i")
            if n > 64:
                raise DatasetError(f"Expected an integer of at most 64 bytes. Received: {n} bytes")
            stack.append(int.from_bytes(r.take(n), "little", signed=True))
        elif op == 0x47:  # BINFLOAT
            stack.append(r.u(">d"))
        elif op in (0x55, 0x43):  # SHORT_BINSTRING, SHORT_BINBYTES
            stack.append(r.take(r.take(1)[0]))
        elif op in (0x54, 0x42):  # BINSTRING, BINBYTES
            stack.append(r.take(r.u("<i") if op == 0x54 else r.u("<I")))
        elif op in (0x8E, 0x96):  # BINBYTES8, BYTEARRAY8
            stack.append(r.take(r.u("<Q")))
        elif op in (0x58, 0x8C, 0x8D):  # BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
            n = r.u("<I") if op == 0x58 else r.take(1)[0] if op == 0x8C else r.u("<Q")
            stack.append(r.take(n).decode("utf-8", "surrogatepass"))
        elif op == 0x71:  # BINPUT
            memo[r.take(1)[0]] = _top(stack)
        elif op == 0x72:  # LONG_BINPUT
            memo[r.u("<I")] = _top(stack)
        elif op == 0x94:  # MEMOIZE
            memo[len(memo)] = _top(stack)
        elif op in (0x68, 0x6A):  # BINGET, LONG_BINGET
            key = r.take(1)[0] if op == 0x68 else r.u("<I")
            if key not in memo:
                raise DatasetError(f"Expected a memo entry {key}. Received: a reference to nothing")
            stack.append(memo[key])
        elif op == 0x63:  # GLOBAL
            module = r.line().decode("ascii", "replace")
            name = r.line().decode("ascii", "replace")
            push_global(module, name)
        elif op == 0x93:  # STACK_GLOBAL
            name, module = stack.pop(), stack.pop()
            if not isinstance(module, str) or not isinstance(name, str):
                raise DatasetError("Expected module and name strings for STACK_GLOBAL. Received: other")
            push_global(module, name)
        elif op == 0x52:  # REDUCE
            args = stack.pop()
            func = stack.pop()
            stack.append(_reduce(func, args))
        elif op == 0x62:  # BUILD
            state = stack.pop()
            _build(_top(stack), state)
        else:
            raise DatasetError(
                f"Expected a plain-data pickle opcode. Received: opcode 0x{op:02X} at offset {r.pos - 1} "
                "(not supported or not allowed)"
            )
        if len(marks) > 10_000 or len(stack) > 10_000_000:
            raise DatasetError("Expected a reasonably nested pickle. Received: a runaway stack")


def _top(stack: list[Any]) -> Any:
    if not stack:
        raise DatasetError("Expected an object on the stack. Received: an empty stack")
    return stack[-1]


def _target(stack: list[Any], kind: type) -> Any:
    obj = _top(stack)
    if not isinstance(obj, kind):
        raise DatasetError(f"Expected a {kind.__name__} to add items to. Received: {type(obj).__name__}")
    return obj


def _pairs(d: dict, items: list[Any]) -> dict:
    if len(items) % 2:
        raise DatasetError("Expected key/value pairs. Received: an odd number of items")
    for k, v in zip(items[::2], items[1::2]):
        if not isinstance(k, (str, bytes, int, float, bool, type(None))):
            raise DatasetError(f"Expected a str, bytes or number as dict key. Received: {type(k).__name__}")
        d[k] = v
    return d


def _resolve(obj: Any, done: dict[int, Any], depth: int = 0) -> Any:
    """Replace array placeholders by arrays; refuse leftover tokens. Each object visited once."""
    if depth > _MAX_DEPTH:
        raise DatasetError(f"Expected nesting depth <= {_MAX_DEPTH}. Received: deeper data")
    if isinstance(obj, (str, bytes, int, float, bool, type(None), np.ndarray)):
        return obj
    key = id(obj)
    if key in done:
        return done[key]
    if isinstance(obj, _PendingArray):
        if obj.array is None:
            raise DatasetError("Expected every array to be completed by BUILD. Received: an unfinished one")
        out: Any = obj.array
    elif isinstance(obj, list):
        out = []
        done[key] = out
        out.extend(_resolve(v, done, depth + 1) for v in obj)
    elif isinstance(obj, dict):
        out = {}
        done[key] = out
        for k, v in obj.items():
            out[k] = _resolve(v, done, depth + 1)
    elif isinstance(obj, tuple):
        out = tuple(_resolve(v, done, depth + 1) for v in obj)
    else:
        raise DatasetError(f"Expected plain data. Received: a leftover {type(obj).__name__} object")
    done[key] = out
    return out


def loads_pickle(data: bytes, path: str | os.PathLike = "<bytes>") -> Any:
    """Decode pickle bytes that hold only plain data and numeric arrays, without unpickling.

    Returns:
        The object: dicts, lists, tuples, str, bytes (Python 2 ``str`` becomes ``bytes``, as with
        ``pickle.load(f, encoding="bytes")``), int, float, bool, ``None`` and ``numpy.ndarray``.

    Raises:
        DatasetError: for any opcode, global or structure outside the allowed subset, or a
            malformed stream; the message names ``path``.
    """
    try:
        return _resolve(_interpret(bytes(data)), {})
    except DatasetError as exc:
        raise DatasetError(f"{exc} [in '{path}']") from None
    except (IndexError, TypeError, ValueError, OverflowError, struct.error, UnicodeDecodeError,
            RecursionError, MemoryError) as exc:
        raise DatasetError(
            f"Expected a well-formed plain-data pickle in '{path}'. Received: {type(exc).__name__}: {exc}"
        ) from None


def load_pickle(path: str | os.PathLike) -> Any:
    """Read a (possibly gzipped) plain-data pickle file safely. See :func:`loads_pickle`."""
    return loads_pickle(read_bytes(path), path)
