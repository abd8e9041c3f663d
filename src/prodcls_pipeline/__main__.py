from prodcls_pipeline.cli import main

raise SystemExit(main())
