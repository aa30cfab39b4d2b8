"""The service's routes, one ``APIRouter`` module per concern, included by ``create_app``."""
