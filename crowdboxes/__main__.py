from crowdboxes.cli import main

raise SystemExit(main())
