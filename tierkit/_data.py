"""numpy arrays and scalars, pandas DataFrames and Series in the JSON codec, exactly and without pickle.

Imported by :mod:`tierkit._codec` only when such a value is cached or read, so
numpy, pandas and pyarrow are never a dependency of tierkit itself.

The bytes of an array travel *beside* the JSON (:data:`tierkit._codec.BUFFERS`
payloads), not inside it: an array is copied once into the payload and once
out of it, never base64-encoded.  A DataFrame or Series is written as an
Apache Arrow IPC stream (``pyarrow``, the ``tierkit[pandas]`` extra), which
keeps the index, columns, dtypes, categoricals and time zones; what Arrow would
change (a ``RangeIndex`` of columns, an index ``freq``, object columns of str,
``attrs``) is noted in the JSON and put back.

Stored bytes are untrusted: object arrays are refused both ways (they can only
be pickled), and a payload naming numpy or pandas is decoded only in a process
that has imported them itself — decoding never imports the application's
libraries.  ``pyarrow`` is imported on demand, as tierkit's own reader.
"""

from __future__ import annotations

import base64
import importlib
import sys
from collections.abc import Callable
from typing import Any

from tierkit.errors import CodecError

ARRAY, SCALAR, PANDAS = "ndarray", "npscalar", "pandas"

AddBuffer = Callable[[Any], int]
"""Appends a buffer (anything with the buffer protocol) to the payload; returns its index."""


class Refused(Exception):
    """The value cannot be stored exactly; the message completes "value … "."""


def encode(value: Any, add: AddBuffer | None, tree: Callable[[Any], Any]) -> tuple[str, Any]:
    """(tag, JSON data) for a numpy/pandas ``value``; ``add`` None only checks that it is accepted.

    ``tree`` encodes nested plain values (a Series name, ``attrs``) with the JSON codec.
    """
    np = sys.modules.get("numpy")
    kind = type(value)
    if np is not None and kind is np.ndarray:
        return ARRAY, _encode_array(np, value, add)
    if np is not None and isinstance(value, np.generic):
        return SCALAR, _encode_scalar(np, value)
    pd = sys.modules.get("pandas")
    if pd is not None and (kind is pd.DataFrame or kind is pd.Series):
        return PANDAS, _encode_pandas(pd, value, add, tree)
    raise Refused(f"of type {kind.__module__}.{kind.__qualname__} is not supported by the JSON codec")


def decode(tag: str, data: Any, buffers: list[memoryview]) -> Any:
    """Undo :func:`encode`; ``CodecError`` for bad data or a library this process has not imported."""
    library = "pandas" if tag == PANDAS else "numpy"
    module = sys.modules.get(library)
    if module is None:
        raise CodecError(
            f"the value is a {library} object and this process has not imported {library} "
            "(stored data never makes tierkit import a library)",
            corrupt=False,
        )
    if tag == ARRAY:
        return _decode_array(module, data, buffers)
    if tag == SCALAR:
        return _decode_scalar(module, data)
    return _decode_pandas(module, data, buffers)


# -- numpy ----------------------------------------------------------------------------------------


def _object_refusal(np: Any, dtype: Any) -> Refused:
    return Refused(
        f"of type numpy.ndarray has dtype {dtype}, which holds Python objects: only pickle stores "
        "those, and pickle is never read from a shared store unsigned"
    )


def _dtype_json(np: Any, dtype: Any) -> Any:
    if dtype.hasobject:
        raise _object_refusal(np, dtype)
    if dtype.fields is None and dtype.subdtype is None:
        return dtype.str
    return np.lib.format.dtype_to_descr(dtype)


def _dtype_from_json(np: Any, data: Any) -> Any:
    dtype = np.dtype(data) if type(data) is str else np.lib.format.descr_to_dtype(_descr(data))
    if dtype.hasobject:
        raise CodecError("corrupt payload: an array of dtype object")
    return dtype


def _descr(data: Any) -> Any:
    """A structured dtype description read back from JSON (lists where numpy wants tuples)."""
    if type(data) is str:
        return data
    fields = []
    for field in data:
        name, sub, *shape = field
        name = tuple(name) if type(name) is list else name
        fields.append((name, _descr(sub), *[tuple(s) for s in shape]))
    return fields


def _encode_array(np: Any, value: Any, add: AddBuffer | None) -> Any:
    dtype = _dtype_json(np, value.dtype)
    if add is None:
        return None
    order = "C"
    if value.flags.c_contiguous:
        flat = value
    elif value.flags.f_contiguous:
        flat, order = value.T, "F"
    else:
        flat = np.ascontiguousarray(value)
    raw = flat.reshape(-1).view(np.uint8) if value.dtype.itemsize else b""
    return {"dtype": dtype, "shape": list(value.shape), "order": order, "buffer": add(raw)}


def _decode_array(np: Any, data: Any, buffers: list[memoryview]) -> Any:
    dtype = _dtype_from_json(np, data["dtype"])
    shape = tuple(int(n) for n in data["shape"])
    order = data["order"]
    if order not in ("C", "F"):
        raise CodecError(f"corrupt payload: array order {order!r}")
    raw = buffers[data["buffer"]]
    count = 1
    for n in shape:
        count *= n
    if dtype.itemsize == 0:
        return np.empty(shape, dtype, order=order)
    if len(raw) != count * dtype.itemsize:
        raise CodecError("corrupt payload: array size does not match its shape")
    array = np.frombuffer(raw, dtype=dtype, count=count).reshape(shape, order=order)
    # A payload handed over in a bytearray (writable) is the array's to keep; bytes are
    # read-only and may be held elsewhere: copy() makes the one writable, owned array.
    if raw.readonly or not array.flags.aligned:
        return array.copy(order="K")
    return array


def _encode_scalar(np: Any, value: Any) -> Any:
    array = np.asarray(value)  # its dtype holds what the bytes are (a str_ scalar's length …)
    return {"dtype": _dtype_json(np, array.dtype), "bytes": base64.b64encode(array.tobytes()).decode()}


def _decode_scalar(np: Any, data: Any) -> Any:
    dtype = _dtype_from_json(np, data["dtype"])
    raw = base64.b64decode(data["bytes"])
    if len(raw) != dtype.itemsize:
        raise CodecError("corrupt payload: scalar size does not match its dtype")
    if dtype.itemsize == 0:
        return np.zeros((), dtype)[()]
    return np.frombuffer(raw, dtype=dtype, count=1)[0]


# -- pandas ---------------------------------------------------------------------------------------


def _pyarrow() -> Any:
    try:
        pyarrow = importlib.import_module("pyarrow")
        importlib.import_module("pyarrow.ipc")
    except ImportError:
        raise Refused(
            "is a pandas object: storing it needs pyarrow (pip install 'tierkit[pandas]')"
        ) from None
    return pyarrow


def _encode_pandas(pd: Any, value: Any, add: AddBuffer | None, tree: Callable[[Any], Any]) -> Any:
    kind = type(value).__name__
    series = kind == "Series"
    frame = value.to_frame(name="_") if series else value
    if not frame.columns.is_unique:
        raise Refused(f"of type pandas.{kind} has duplicate column labels, which Arrow cannot store")
    objects = []
    for position, dtype in enumerate(frame.dtypes):
        if pd.api.types.is_object_dtype(dtype):
            column = frame.iloc[:, position]
            if pd.api.types.infer_dtype(column, skipna=False) not in _STRINGS:
                raise _object_column(pd, kind, frame.columns[position], column)
            objects.append(position)
    index = frame.index
    object_index = index.nlevels == 1 and pd.api.types.is_object_dtype(index.dtype)
    if object_index and pd.api.types.infer_dtype(index, skipna=False) not in _STRINGS:
        raise _object_column(pd, kind, "the index", index)
    if value.attrs:  # kept in the JSON: Arrow's metadata would lose what JSON cannot hold
        frame = frame.copy(deep=False)
        frame.attrs = {}
    pa = _pyarrow()
    try:
        table = pa.Table.from_pandas(frame, preserve_index=None)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise Refused(f"of type pandas.{kind} cannot be stored exactly with Arrow: {exc}") from None
    data: dict[str, Any] = {
        "series": tree(value.name) if series else None,
        "is_series": series,
        "objects": objects,
        "object_index": object_index,
        "attrs": tree(dict(value.attrs)) if value.attrs else None,
        "freq": getattr(index, "freqstr", None),
        "columns": _range(frame.columns, tree),
    }
    if add is None:
        return None
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data["buffer"] = add(sink.getvalue())
    return data


_STRINGS = frozenset({"string", "empty"})
"""What an object column may hold: str values, or none at all."""


def _object_column(pd: Any, kind: str, label: Any, column: Any) -> Refused:
    found = pd.api.types.infer_dtype(column, skipna=False)
    where = label if label == "the index" else f"column {label!r}"
    return Refused(
        f"of type pandas.{kind} has {where} of dtype object holding {found} values: only object "
        "columns of str (no missing values) are stored; give it a real dtype"
    )


def _range(columns: Any, tree: Callable[[Any], Any]) -> Any:
    if type(columns).__name__ != "RangeIndex":
        return None
    return [columns.start, columns.stop, columns.step, tree(columns.name)]


def _decode_pandas(pd: Any, data: Any, buffers: list[memoryview]) -> Any:
    from tierkit._codec import decode_tree

    def tree(node: Any) -> Any:
        return decode_tree(node, buffers)

    pa = _pyarrow_for_decoding()
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(buffers[data["buffer"]]))
        frame = reader.read_all().to_pandas()
    except pa.ArrowException as exc:
        raise CodecError(f"corrupt payload: Arrow: {exc}") from exc
    columns = data["columns"]
    if columns is not None:
        start, stop, step, name = columns
        frame.columns = pd.RangeIndex(start, stop, step, name=tree(name))
    for position in data["objects"]:
        frame.isetitem(position, frame.iloc[:, position].astype(object))
    if data["object_index"]:
        frame.index = frame.index.astype(object)
    if data["freq"] is not None:
        frame.index.freq = data["freq"]
    value = frame.iloc[:, 0].rename(tree(data["series"])) if data["is_series"] else frame
    if data["attrs"] is not None:
        value.attrs = tree(data["attrs"])
    return value


def _pyarrow_for_decoding() -> Any:
    try:
        return _pyarrow()
    except Refused:
        raise CodecError(
            "the value is a pandas object stored with Arrow: install pyarrow (pip install 'tierkit[pandas]')",
            corrupt=False,
        ) from None
