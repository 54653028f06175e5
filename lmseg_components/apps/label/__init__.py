"""MONAI Label integration (optional extra ``lmseg[label]``): an infer task that passes the request's text
prompt to a text-guided bundle's network, an app class serving local bundles, and ``lmseg label-app``.

``monailabel`` is imported only by :mod:`lmseg_components.apps.label.infer` and :mod:`lmseg_components.apps.label.app`;
:func:`~lmseg_components.apps.label.make_app.make_label_app` (the CLI) needs only lmseg's own dependencies.
"""

from lmseg_components.apps.label.make_app import make_label_app

__all__ = ["make_label_app"]
