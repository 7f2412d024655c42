from gradatlas.app.cli import main

raise SystemExit(main())
