"""The rest of syncd uses the Box client only through the package's face, `syncd.box`.

Its modules (transport, errors, uploads...) may move or split without touching a caller,
and what a caller may rely on is what `syncd/box/__init__.py` exports and documents.
"""

from __future__ import annotations

from tests.test_layers import imported_modules, module_sources


def reaches_past_the_face(sources: dict[str, str]) -> list[str]:
    """`importer imports syncd.box.<module>` for every module outside syncd.box that does so."""
    known = set(sources)
    found = []
    for module, source in sorted(sources.items()):
        if module == "syncd.box" or module.startswith("syncd.box."):
            continue
        is_package = any(other.startswith(module + ".") for other in known)
        found += [f"{module} imports {imported}" for imported in
                  sorted(imported_modules(module, source, known, is_package=is_package))
                  if imported.startswith("syncd.box.")]
    return found


def test_syncd_imports_the_box_client_only_from_its_face() -> None:
    sources = module_sources()
    assert "syncd.pipeline.ingest" in sources and "syncd.box.transport" in sources
    assert reaches_past_the_face(sources) == []


def test_an_import_around_the_face_is_found() -> None:
    sources = module_sources()
    sources["syncd.pipeline.ingest"] += "\nfrom syncd.box.upload_values import hash_file\n"
    sources["syncd.service.daemon"] += "\ndef f():\n    from syncd.box import transport\n"
    assert reaches_past_the_face(sources) == [
        "syncd.pipeline.ingest imports syncd.box.upload_values",
        "syncd.service.daemon imports syncd.box.transport",
    ]
