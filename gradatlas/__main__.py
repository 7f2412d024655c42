from gradatlas.cli import main

raise SystemExit(main())
