"""The host side of the serial link: protocol definitions, frame codec, reliable client."""
