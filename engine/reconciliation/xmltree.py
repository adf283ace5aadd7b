"""Reading untrusted XML into a small tree whose every element knows its line and column.

Why: a bank statement is XML from outside. defusedxml refuses what makes XML dangerous (a DTD,
entity expansion, external references: "billion laughs" and XXE); this module adds what a
reconciliation needs on top: every element located, so a refusal can say where; namespaces
dropped, so one reader serves every camt.053 version (001.02 to 001.08 differ in namespace, and
files in the wild come with and without prefixes); and limits on depth and element count.
"""

from __future__ import annotations

from xml.etree.ElementTree import ParseError as ExpatError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from engine.reconciliation.limits import (
    FIELD_LENGTH_MAX,
    FILE_SIZE_BYTES_MAX,
    XML_DEPTH_MAX,
    XML_ELEMENTS_MAX,
)
from engine.reconciliation.line import ParseError


class Node:
    """An element: local tag name, namespace, attributes (local names), text, children."""

    __slots__ = ("attributes", "children", "column", "line", "namespace", "parts", "size", "tag")

    def __init__(
        self, tag: str, namespace: str, attributes: dict[str, str], line: int, column: int
    ) -> None:
        self.tag = tag
        self.namespace = namespace
        self.attributes = attributes
        self.line = line
        self.column = column
        self.children: list[Node] = []
        self.parts: list[str] = []
        self.size = 0

    @property
    def text(self) -> str:
        """The element's own text, stripped of surrounding white space."""
        return "".join(self.parts).strip()

    def error(self, reason: str) -> ParseError:
        return ParseError(self.line, self.column, f"<{self.tag}>: {reason}")

    def all(self, tag: str) -> list[Node]:
        return [child for child in self.children if child.tag == tag]

    def find(self, *path: str) -> Node | None:
        """The first element down `path`, or None."""
        node: Node | None = self
        for tag in path:
            assert node is not None
            node = next((child for child in node.children if child.tag == tag), None)
            if node is None:
                return None
        return node

    def get(self, *path: str) -> Node:
        """The first element down `path`; refused at the deepest element found if missing."""
        node = self
        for index, tag in enumerate(path):
            found = node.find(tag)
            if found is None:
                missing = "/".join(path[index:])
                raise node.error(f"lacks <{missing}>")
            node = found
        return node


def _split(name: str) -> tuple[str, str]:
    if name.startswith("{"):
        namespace, _, local = name[1:].partition("}")
        return namespace, local
    return "", name


class _Builder:
    """The parser's target: builds located Nodes, within the depth and count limits."""

    def __init__(self) -> None:
        self.stack: list[Node] = []
        self.root: Node | None = None
        self.count = 0
        self.text_length = 0
        self.where = (1, 1)
        self.parser: DefusedXMLParser | None = None

    def locate(self) -> tuple[int, int]:
        if self.parser is None:
            return self.where
        expat = self.parser.parser
        return expat.CurrentLineNumber, expat.CurrentColumnNumber + 1

    def start(self, tag: str, attributes: dict[str, str]) -> None:
        line, column = self.locate()
        if len(self.stack) >= XML_DEPTH_MAX:
            raise ParseError(line, column, f"elements nest deeper than {XML_DEPTH_MAX}")
        self.count += 1
        if self.count > XML_ELEMENTS_MAX:
            raise ParseError(line, column, f"more than {XML_ELEMENTS_MAX} elements")
        namespace, local = _split(tag)
        local_attributes = {_split(key)[1]: value for key, value in attributes.items()}
        node = Node(local, namespace, local_attributes, line, column)
        if self.stack:
            self.stack[-1].children.append(node)
        else:
            self.root = node
        self.stack.append(node)

    def end(self, tag: str) -> None:
        self.stack.pop()

    def data(self, text: str) -> None:
        if not self.stack:
            return
        node = self.stack[-1]
        if node.children and not text.strip():
            return  # the indentation between child elements
        node.size += len(text)
        if node.size > FIELD_LENGTH_MAX:
            raise node.error(f"text is longer than {FIELD_LENGTH_MAX} characters")
        node.parts.append(text)

    def close(self) -> Node | None:
        return self.root


def parse_xml(data: bytes) -> Node:
    """The root element of `data`; refuses malformed or dangerous XML with its location."""
    if len(data) > FILE_SIZE_BYTES_MAX:
        raise ParseError(1, 1, f"file is larger than {FILE_SIZE_BYTES_MAX} bytes")
    builder = _Builder()
    parser = DefusedXMLParser(target=builder, forbid_dtd=True)
    builder.parser = parser
    try:
        parser.feed(data)
        root = parser.close()
    except ExpatError as exc:
        line, column = exc.position
        reason = str(exc).split(": line", 1)[0]
        raise ParseError(line, column + 1, f"not well-formed XML ({reason})") from None
    except DefusedXmlException as exc:
        line, column = builder.locate()
        raise ParseError(line, column, f"refused XML feature ({exc})") from None
    except LookupError as exc:  # the XML declaration names an encoding Python does not know
        line, column = builder.locate()
        raise ParseError(line, column, f"XML in an unknown encoding ({exc})") from None
    if not isinstance(root, Node):
        raise ParseError(1, 1, "no XML root element")
    return root
