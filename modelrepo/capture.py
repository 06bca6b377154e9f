"""Find everything a function needs to run on its own, as data (no files written here).

Walks the function's bytecode and def header, its closure and defaults, and recursively the
helper functions and classes of the user's own code (notebook cells, a script's `__main__`,
the function's module). Each name the code uses ends up as one of: an import line, a literal,
a value to pickle, or a source definition. `source_writer` turns the result into files.
"""

from __future__ import annotations
import __future__

import ast
import builtins
import dis
import importlib
import inspect
import linecache
import sys
import textwrap
import types
from dataclasses import dataclass, field
from typing import Any

from modelrepo.requirements import is_stdlib, is_third_party

_LOAD_OPS = {"LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL"}
_LITERAL_TYPES = (int, float, complex, str, bytes, bool, type(None))
_MAX_LITERAL = 200


class CaptureError(Exception):
    """Something the function uses cannot be saved; says which name and why."""


@dataclass
class Definition:
    """A helper (or the main function) copied as source; `needs` = names its def/class
    statement evaluates when it runs (decorators, defaults, annotations, bases, class body)."""

    name: str
    source: str
    obj: Any
    needs: set[str] = field(default_factory=set)


@dataclass
class Captured:
    """What source.py must contain for `main` to run without the notebook."""

    main: str
    args: list[str]
    imports: dict[str, str] = field(default_factory=dict)  # bound name -> import line
    literals: dict[str, str] = field(default_factory=dict)  # name -> Python literal text
    values: dict[str, Any] = field(default_factory=dict)  # name -> object to pickle
    definitions: list[Definition] = field(default_factory=list)  # dependencies first, main last
    modules: set[str] = field(default_factory=set)  # modules imported by the import lines
    user_modules: set[str] = field(default_factory=set)  # modules to pickle by value
    future_annotations: bool = False  # the user's code had `from __future__ import annotations`


def capture(fn: Any) -> Captured:
    """Analyse `fn`; raise CaptureError for what cannot be captured."""
    target = inspect.unwrap(fn)
    if not isinstance(target, types.FunctionType):
        raise CaptureError(f"deploy() needs a Python function, not {type(fn).__name__}")
    if target.__name__ == "<lambda>":
        raise CaptureError("deploy() needs a function defined with `def`, not a lambda")
    walker = _Walker(target)
    walker.bind(target.__name__, fn, is_main=True)
    captured = walker.result
    captured.args = [_arg_spec(p) for p in _parameters(target)]
    # Copied code keeps the annotation semantics it was written with (lazy annotations may
    # name things that exist only for type checkers).
    captured.future_annotations = bool(
        target.__code__.co_flags & __future__.annotations.compiler_flag
    )
    return captured


def _parameters(fn: types.FunctionType) -> list[inspect.Parameter]:
    kinds = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )
    return [p for p in inspect.signature(fn).parameters.values() if p.kind in kinds]


def _arg_spec(param: inspect.Parameter) -> str:
    """"x:int" from an annotation, "x" without one (metadata.yaml mainFunctionArgs)."""
    ann = param.annotation
    if ann is inspect.Parameter.empty:
        return param.name
    if isinstance(ann, str):
        text = ann
    elif isinstance(ann, type):
        text = ann.__name__
    else:
        text = repr(ann).replace("typing.", "")
    return f"{param.name}:{text}"


def literal_text(value: Any) -> str | None:
    """The Python literal for a small plain value, or None when it must be pickled."""

    def plain(v: Any) -> bool:
        if type(v) in _LITERAL_TYPES:
            return True
        if type(v) in (list, tuple, set, frozenset):
            return all(plain(i) for i in v)
        if type(v) is dict:
            return all(plain(k) and plain(i) for k, i in v.items())
        return False

    if not plain(value) or type(value) is frozenset:
        return None
    text = repr(value)
    if len(text) > _MAX_LITERAL:
        return None
    try:
        back = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return text if back == value and type(back) is type(value) else None


def _code_names(code: types.CodeType) -> set[str]:
    """Global names a code object (and the code nested in it) reads or writes."""
    names: set[str] = set()
    for instr in dis.get_instructions(code):
        if instr.opname in _LOAD_OPS and isinstance(instr.argval, str):
            names.add(instr.argval)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _loads(node: ast.AST | None) -> set[str]:
    if node is None:
        return set()
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _header_names(node: ast.FunctionDef | ast.AsyncFunctionDef, skip: set[int]) -> set[str]:
    """Names evaluated when a `def` runs: decorators, annotations, defaults (not the body)."""
    names: set[str] = set()
    a = node.args
    for part in (*node.decorator_list, node.returns, *a.defaults, *a.kw_defaults):
        if part is not None and id(part) not in skip:
            names |= _loads(part)
    for arg in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg):
        if arg is not None:
            names |= _loads(arg.annotation)
    return names


def _class_body_names(node: ast.ClassDef) -> set[str]:
    """Names a class statement evaluates: bases, decorators, class-level statements, headers."""
    names: set[str] = set()
    for part in (*node.bases, *node.keywords, *node.decorator_list):
        names |= _loads(part)
    for stmt in node.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names |= _header_names(stmt, set())
        elif isinstance(stmt, ast.ClassDef):
            names |= _class_body_names(stmt)
        else:
            names |= _loads(stmt)
    return names


def _attribute_chains(tree: ast.AST) -> set[str]:
    """Dotted names like `sklearn.linear_model.Ridge` used in the code."""
    chains = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts = []
            current: ast.AST = node
            while isinstance(current, ast.Attribute):
                parts.append(current.attr)
                current = current.value
            if isinstance(current, ast.Name):
                chains.add(".".join([current.id, *reversed(parts)]))
    return chains


def _class_methods(cls: type) -> list[types.FunctionType]:
    found = []
    for value in vars(cls).values():
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property):
            found.extend(f for f in (value.fget, value.fset, value.fdel) if f is not None)
            continue
        value = inspect.unwrap(value) if callable(value) else value
        if isinstance(value, types.FunctionType):
            found.append(value)
    return found


def _find_class_source(cls: type) -> str | None:
    """Class source when inspect cannot find it (classes defined in notebook cells)."""
    files = [m.__code__.co_filename for m in _class_methods(cls)]
    files = [f for f in files if not f.startswith("<string>")]
    candidates = files or list(linecache.cache)
    for filename in reversed(candidates):
        lines = linecache.getlines(filename)
        if not lines:
            continue
        try:
            tree = ast.parse("".join(lines))
        except SyntaxError:
            continue
        matches = [
            n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls.__name__
        ]
        if matches:
            node = matches[-1]
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            return "".join(lines[start - 1 : node.end_lineno])
    return None


def _source_of(obj: Any, name: str) -> str:
    try:
        text = inspect.getsource(obj)
    except (OSError, TypeError):
        text = _find_class_source(obj) if isinstance(obj, type) else None
    if not text:
        raise CaptureError(
            f"cannot capture `{name}`: its source code is not available "
            "(define it in a notebook cell, a script or a module file)"
        )
    return textwrap.dedent(text)


def _nonlocal_to_global(source: str) -> str:
    """A closure variable becomes a module-level name in source.py, so the `nonlocal` that
    rebinds it becomes `global` (the state lives on in the deployment's module)."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    top = tree.body[0]
    for node in ast.walk(top):
        if isinstance(node, ast.Nonlocal):
            line = lines[node.lineno - 1].encode()
            col = node.col_offset
            if line[col : col + 8] == b"nonlocal":
                lines[node.lineno - 1] = (line[:col] + b"global" + line[col + 8 :]).decode()
    return "".join(lines)


def _is_user_module(module_name: str | None, main_module: str) -> bool:
    if not module_name:
        return False
    if module_name in ("__main__", main_module) or module_name.startswith("__main__."):
        return True
    return not is_third_party(module_name) and not is_stdlib(module_name)


class _Walker:
    """Binds every name the main function needs, recursing into user-defined helpers."""

    def __init__(self, main: types.FunctionType) -> None:
        self.main_module = main.__module__
        self.result = Captured(main=main.__name__, args=[])
        self.bound: dict[str, Any] = {}
        self.pending_defs: dict[int, str] = {}

    # -- binding -------------------------------------------------------------------------
    def bind(self, name: str, value: Any, *, is_main: bool = False) -> None:
        if name in self.bound:
            if self.bound[name] is value or (
                name in self.result.literals and literal_text(value) == self.result.literals[name]
            ):
                return
            raise CaptureError(
                f"cannot capture `{name}`: two different values have that name "
                "(a global and a closure variable or default); rename one of them"
            )
        self.bound[name] = value
        if is_main:
            self._define_function(name, inspect.unwrap(value))
            return
        if isinstance(value, types.ModuleType):
            self._bind_module(name, value)
        elif self._is_user_function(name, value):
            self._define_function(name, inspect.unwrap(value))
        elif self._is_user_class(name, value):
            self._define_class(name, value)
        elif self._importable(name, value):
            pass
        elif (text := literal_text(value)) is not None:
            self.result.literals[name] = text
        else:
            self._check_capturable(name, value)
            self.result.values[name] = value
            module = getattr(type(value), "__module__", None)
            if _is_user_module(module, self.main_module) and module in sys.modules:
                self.result.user_modules.add(module)

    def _bind_module(self, name: str, module: types.ModuleType) -> None:
        mod_name = module.__name__
        if _is_user_module(mod_name, self.main_module) and not is_stdlib(mod_name):
            where = getattr(module, "__file__", None) or mod_name
            raise CaptureError(
                f"cannot capture `{name}`: it is the local module {mod_name} ({where}), which is "
                "not an installed package, so the deployment could not import it; define what "
                "the function needs in the notebook/script instead, or install the module as a package"
            )
        line = f"import {mod_name}" if name == mod_name else f"import {mod_name} as {name}"
        if "." in mod_name and name == mod_name.rsplit(".", 1)[1]:
            parent, child = mod_name.rsplit(".", 1)
            line = f"from {parent} import {child}"
        self.result.imports[name] = line
        self.result.modules.add(mod_name)

    def _submodule_imports(self, tree: ast.AST, namespace: dict[str, Any]) -> None:
        """`import sklearn.linear_model` when the code uses `sklearn.linear_model.X`."""
        for chain in _attribute_chains(tree):
            head, *rest = chain.split(".")
            module = namespace.get(head)
            if not isinstance(module, types.ModuleType) or not rest:
                continue
            for i in range(len(rest), 0, -1):
                sub = ".".join([module.__name__, *rest[:i]])
                if isinstance(sys.modules.get(sub), types.ModuleType):
                    key = f"import {sub}"
                    if not any(line == key for line in self.result.imports.values()):
                        self.result.imports[f"{head}.{'.'.join(rest[:i])}"] = key
                        self.result.modules.add(sub)
                    break

    def _is_user_function(self, name: str, value: Any) -> bool:
        target = inspect.unwrap(value) if callable(value) else value
        return (
            isinstance(target, types.FunctionType)
            and target.__name__ == name
            and target.__name__ != "<lambda>"
            and _is_user_module(target.__module__, self.main_module)
        )

    def _is_user_class(self, name: str, value: Any) -> bool:
        return (
            isinstance(value, type)
            and value.__name__ == name
            and _is_user_module(value.__module__, self.main_module)
        )

    def _importable(self, name: str, value: Any) -> bool:
        """`from module import thing` for functions/classes of installed or standard modules."""
        module_name = getattr(value, "__module__", None)
        attr = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
        if (
            not isinstance(module_name, str)
            or not isinstance(attr, str)
            or "." in attr
            or "<" in attr
            or _is_user_module(module_name, self.main_module)
        ):
            return False
        if isinstance(value, (int, float, str, bytes, tuple, list, dict, set)):
            return False
        try:
            if getattr(importlib.import_module(module_name), attr) is not value:
                return False
        except Exception:
            return False
        if module_name == "builtins":
            if name == attr:
                return True  # a builtin under its own name needs no line at all
            self.result.imports[name] = f"{name} = {attr}"
            return True
        line = f"from {module_name} import {attr}"
        self.result.imports[name] = line if attr == name else f"{line} as {name}"
        self.result.modules.add(module_name)
        return True

    @staticmethod
    def _check_capturable(name: str, value: Any) -> None:
        """Fail early, naming the variable, for values that can never be pickled."""
        kinds = (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType, types.FrameType)
        if isinstance(value, kinds):
            raise CaptureError(
                f"cannot capture `{name}`: it is a {type(value).__name__}, which cannot be saved; "
                "make a list of its values or create it inside the function"
            )
        if hasattr(value, "fileno") and hasattr(value, "close") and not isinstance(value, type):
            raise CaptureError(
                f"cannot capture `{name}`: it is an open {type(value).__name__} (file, socket or "
                "stream), which cannot be saved; open it inside the function instead"
            )

    # -- definitions ---------------------------------------------------------------------
    def _define_function(self, name: str, fn: types.FunctionType) -> None:
        source = _source_of(fn, name)
        tree = ast.parse(source)
        node = tree.body[0]
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            raise CaptureError(f"cannot capture `{name}`: its source is not a `def` statement")
        source, skip, renamed = self._rewrite_defaults(name, fn, source, node)
        source = _nonlocal_to_global(source)
        namespace = fn.__globals__
        # the closure's variables become module-level names in source.py
        for var, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            self.bind(var, value)
        header = _header_names(node, skip) | renamed
        needed = _code_names(fn.__code__) | header
        self._bind_globals(needed, namespace)
        self._submodule_imports(node, namespace)
        self.result.definitions.append(Definition(name, source.rstrip() + "\n", fn, header))

    def _rewrite_defaults(
        self, name: str, fn: types.FunctionType, source: str, node: ast.FunctionDef | ast.AsyncFunctionDef
    ) -> tuple[str, set[int], set[str]]:
        """Replace default expressions that source.py could not re-evaluate by captured names."""
        pairs: list[tuple[ast.expr, str, Any]] = []
        a = node.args
        positional = [*a.posonlyargs, *a.args]
        for arg, expr, value in zip(
            positional[len(positional) - len(a.defaults):], a.defaults, fn.__defaults__ or ()
        ):
            pairs.append((expr, arg.arg, value))
        for arg, expr in zip(a.kwonlyargs, a.kw_defaults):
            if expr is not None and fn.__kwdefaults__ and arg.arg in fn.__kwdefaults__:
                pairs.append((expr, arg.arg, fn.__kwdefaults__[arg.arg]))
        lines = source.splitlines(keepends=True)
        renamed: set[str] = set()
        skip: set[int] = set()
        replacements = []
        for expr, arg, value in pairs:
            try:
                if ast.literal_eval(expr) == value:
                    continue
            except (ValueError, SyntaxError, TypeError):
                pass
            if isinstance(expr, ast.Name) and fn.__globals__.get(expr.id, _MISSING) is value:
                continue
            new_name = f"_{name}_{arg}_default"
            renamed.add(new_name)
            self.bind(new_name, value)
            skip.add(id(expr))
            replacements.append((expr, new_name))
        for expr, new_name in sorted(
            replacements, key=lambda r: (r[0].lineno, r[0].col_offset), reverse=True
        ):
            start, end = expr.lineno - 1, expr.end_lineno - 1
            first = lines[start].encode()
            last = lines[end].encode()
            if start == end:
                lines[start] = (first[: expr.col_offset] + new_name.encode() + first[expr.end_col_offset:]).decode()
            else:
                lines[start] = (first[: expr.col_offset] + new_name.encode() + last[expr.end_col_offset:]).decode()
                del lines[start + 1 : end + 1]
        return "".join(lines), skip, renamed

    def _define_class(self, name: str, cls: type) -> None:
        source = _source_of(cls, name)
        tree = ast.parse(source)
        node = tree.body[0]
        if not isinstance(node, ast.ClassDef):
            raise CaptureError(f"cannot capture `{name}`: its source is not a `class` statement")
        namespace = vars(sys.modules[cls.__module__]) if cls.__module__ in sys.modules else {}
        methods = _class_methods(cls)
        if methods:
            namespace = methods[0].__globals__
        needed = _class_body_names(node)
        for method in methods:
            needed |= _code_names(method.__code__)
        self._bind_globals(needed - {name}, namespace)
        self._submodule_imports(node, namespace)
        header = _class_body_names(node) - {name}
        self.result.definitions.append(Definition(name, source.rstrip() + "\n", cls, header))

    def _bind_globals(self, names: set[str], namespace: dict[str, Any]) -> None:
        for global_name in sorted(names):
            if global_name in namespace:
                self.bind(global_name, namespace[global_name])
            elif not hasattr(builtins, global_name):
                continue  # unknown name: the doctest gate or the first call will say so


_MISSING = object()

