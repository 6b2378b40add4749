"""PyInstaller's entry script for the packaged client (`voicechat-client.spec`)."""

from kivy_client.main import main

if __name__ == "__main__":
    main()
