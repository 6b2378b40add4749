"""`python -m kivy_client` runs the desktop client."""

from kivy_client.main import main

if __name__ == "__main__":
    main()
