"""Plain-Python machine learning for segmentation: MONAI networks, inference pipelines, training loops
and the classical CT lung method. Imports no Django and reads no settings.

Modules (imported explicitly, so that importing this package does not load torch):

- ``progress``: :class:`InferenceCancelled`, ``ProgressCallback``, :class:`ProgressReporter` (shared by
  ``inference``, ``lung`` and ``training``; no torch);
- ``device``: :func:`select_device`, :func:`configure_threads`;
- ``networks``: :func:`build_network`, :func:`default_network_config`;
- ``inference``: :class:`Preprocessing`, :class:`NetworkSegmenter`, :class:`LungSegmenter`,
  :func:`load_segmenter` (and :class:`InferenceCancelled`, imported from ``progress``);
- ``lung``: :func:`segment_lungs`, ``LUNG_LABEL_TABLE``;
- ``training``: :func:`train_segmentation`, :func:`save_checkpoint` (datasets are read with
  :func:`annotation.interop.msd.dataset_read`).

Axis order follows ``annotation.imaging``: arrays are (k, j, i), geometry in LPS millimetres.
"""
