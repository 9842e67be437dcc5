from libervia.cli import main

raise SystemExit(main())
