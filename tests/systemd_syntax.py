"""systemd's reading of the files the roles write, as the tests model it.

systemd.syntax(7), systemd.service(7) "Command lines" and systemd.exec(7)
EnvironmentFile=: line continuations, quoting and C escapes, `%` specifiers,
`$` variables, and the double-quote rules of environment files. The tests
compare the *resulting* argv and environment with what the input asks for,
so an escaping mistake shows as a wrong argument or value (or as a refused
line), not as a string that merely looks right. test_render.py checks this
model on lines whose reading is documented.
"""

from __future__ import annotations

import re


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections -> [(directive, value)] in order; continuation lines joined (backslash -> space)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    lines = iter(text.splitlines())
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        while stripped.endswith("\\"):
            nxt = next(lines).strip()
            if nxt[:1] in "#;":  # comment lines inside a continuation are skipped
                continue
            stripped = stripped[:-1] + " " + nxt
        if stripped.startswith("["):
            assert stripped.endswith("]"), stripped
            current = stripped[1:-1]
            assert current not in sections, f"section [{current}] twice"
            sections[current] = []
            continue
        assert current is not None, f"directive outside a section: {stripped!r}"
        key, sep, value = stripped.partition("=")
        assert sep, f"not a directive: {stripped!r}"
        sections[current].append((key.strip(), value.strip()))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def one(section: list[tuple[str, str]], key: str) -> str:
    found = values(section, key)
    assert len(found) == 1, f"{key}= set {len(found)} times: {found}"
    return found[0]


C_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "s": " ",
             "\\": "\\", '"': '"', "'": "'"}


def split_words(line: str) -> list[str]:
    """extract_first_word(EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE), word by word; an unquoted `;` is refused."""
    words, i, n = [], 0, len(line)
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            return words
        if line[i] == ";" and (i + 1 == n or line[i + 1] in " \t"):
            raise AssertionError(f"unquoted ';' would end the command line at {line[i:i + 40]!r}")
        word, quote = [], None
        while i < n and (quote or line[i] not in " \t"):
            c = line[i]
            if c == "\\":
                assert i + 1 < n, f"backslash at the end of {line!r}"
                e = line[i + 1]
                if e == "x":
                    word.append(chr(int(line[i + 2:i + 4], 16)))
                    i += 4
                    continue
                assert e in C_ESCAPES, f"unknown escape \\{e} in {line!r}"
                word.append(C_ESCAPES[e])
                i += 2
                continue
            if quote:
                if c == quote:
                    quote = None
                else:
                    word.append(c)
            elif c in "\"'":
                quote = c
            else:
                word.append(c)
            i += 1
        assert quote is None, f"unterminated quote in {line!r}"
        words.append("".join(word))


SPECIFIER_RE = re.compile(r"%(.)")


def expand_specifiers(word: str, instance: str | None = None) -> str:
    """%% -> %; %i -> the instance name when given; any other specifier becomes <%X> (the tests expect none)."""
    def one_specifier(match):
        char = match.group(1)
        if char == "%":
            return "%"
        if char == "i" and instance is not None:
            return instance
        return f"<%{char}>"
    return SPECIFIER_RE.sub(one_specifier, word)


def expand_variables(word: str) -> str:
    """$$ -> $ (at exec time); a single $ before a name or { would be substituted: marked <$>."""
    out, i = [], 0
    while i < len(word):
        if word[i] == "$":
            if word[i + 1:i + 2] == "$":
                out.append("$")
                i += 2
                continue
            if re.match(r"[A-Za-z_{]", word[i + 1:i + 2]):
                out.append("<$>")
                i += 1
                continue
        out.append(word[i])
        i += 1
    return "".join(out)


def exec_argv(value: str, instance: str | None = None) -> list[str]:
    """The argv systemd runs for an ExecStart= value (of the instance, for a template unit)."""
    return [expand_variables(expand_specifiers(w, instance)) for w in split_words(value)]


ENV_ESCAPED = '"\\`$'


def env_value(line: str, rest: str) -> str:
    """The value of a double-quoted KEY="..." (rest: from the opening quote), read by the rules of
    POSIX double quotes, which systemd's env-file.c follows: a backslash before one of \\ " ` $ gives
    that character, before any other it stays. An unescaped `$` or backtick is refused too: the roles
    escape them, so that the file reads the same to a shell that sources it."""
    assert rest.startswith('"'), f"value not double-quoted: {line!r}"
    value, i = [], 1
    while True:
        assert i < len(rest), f"unterminated quote: {line!r}"
        c = rest[i]
        if c == "\\":
            assert i + 1 < len(rest), f"unterminated quote (escaped at the end): {line!r}"
            e = rest[i + 1]
            if e in ENV_ESCAPED:
                value.append(e)
                i += 2
            else:
                value.append("\\")
                i += 1
        elif c == '"':
            i += 1
            break
        else:
            assert c not in "$`", f"unescaped {c} in {line!r}"
            value.append(c)
            i += 1
    assert rest[i:].strip() == "", f"text after the closing quote: {line!r}"
    return "".join(value)


def parse_env_file(text: str) -> dict[str, str]:
    """systemd's EnvironmentFile= reading of the KEY="value" lines the roles write."""
    env = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip()[0] in "#;":
            continue
        key, sep, rest = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"not KEY=value: {line!r}"
        assert key not in env, f"{key} twice"
        env[key] = env_value(line, rest)
    return env
