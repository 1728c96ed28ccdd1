from provider_agent.cli import main

main()
