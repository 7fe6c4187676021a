"""``python -m fusion.survival``: the survival head stage's command line (:func:`fusion.survival.run.main`)."""
from fusion.survival.run import main

raise SystemExit(main())
