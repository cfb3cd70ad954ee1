"""Tables, figures and the PDF report of a run, from one :class:`reports.inputs.ReportInputs` (the
tidy DataFrames defined in ``reports.schema`` and the run's facts as plain typed values); the
aggregate in long form (``reports.aggregate``); ``reports.text`` is the one text-table
formatter. Depends on pandas and matplotlib only: no lfubench instrument, no ``studies``, no
Optuna."""
