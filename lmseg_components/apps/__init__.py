"""The apps floor: what a user runs — the ``lmseg`` command line (:mod:`~lmseg_components.apps.cli`), ``lmseg
segment``, ``lmseg serve``, ``lmseg publish``, the memory bank (``lmseg jras-bank``), the Model-Zoo-style bundle
checks, and the MONAI Label and MONAI Deploy apps. Built on the library floors below; nothing below imports it
(``tests/test_floors.py``)."""
