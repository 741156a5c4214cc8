"""The PortOne V1 adapter: an httpx client and the pure classification of its answers."""
