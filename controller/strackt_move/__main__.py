from strackt_move.cli import main

raise SystemExit(main())
