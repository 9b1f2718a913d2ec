from mailpolicy.cli import main

raise SystemExit(main())
