from contextd.entry import main

raise SystemExit(main())
