"""``python -m lmseg_components.apps.cli``: the ``lmseg`` command."""

from lmseg_components.apps.cli.main import main

main()
