"""Tables, figures and the PDF report, from the tidy DataFrames defined in ``reports.schema``;
``reports.text`` is the one text-table formatter. Depends on pandas and matplotlib only: no
lfubench instrument, no Optuna."""
