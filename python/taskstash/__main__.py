"""`python -m taskstash`: the `taskstash` command."""

from taskstash.cli import main

raise SystemExit(main())
