from contextd.cli import main

raise SystemExit(main())
