"""napari support: an npe2 reader that opens an rcanlive dataset as layers.

Declared through the ``napari.manifest`` entry point (``napari.yaml`` beside this file);
napari itself is not imported here: the reader returns plain layer data.
"""
