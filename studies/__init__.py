"""Plans and the pipeline that runs them: the typed plan schema (``schema``), plan loading and
``--set`` overrides (``plan``), one item end to end (``pipeline``), the Optuna run engine
(``engine``), item progress lines (``progress``) and the trials-to-tables step (``records``).
Depends on ``bench`` and ``models``, and on ``reports.schema`` for the tidy table layout."""
