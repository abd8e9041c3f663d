from prodcls_pipeline.cli import main

main()
