"""The CAMELS-US data layer: raw-file readers, PET, the ``prepare`` stage and the loader.

Modules
-------
camels
    Basin-mean forcing (daymet / maurer / nldas), USGS streamflow and the CAMELS attributes.
sacsma
    The CAMELS SAC-SMA + Snow-17 model output (reference row of the leaderboard).
modis
    MOD16A2 basin-mean evapotranspiration files.
pet
    Hargreaves potential evapotranspiration (docs/data.md#hargreaves-pet).
prepare
    The ``prepare`` stage: raw folder -> ``camels.nc`` + ``manifest.json``.
dataset
    :func:`~benchmark.data.dataset.load_dataset`, the one way to read the processed data.
fetch
    ``hbvbench data fetch``: download the official CAMELS-US archives.
"""
