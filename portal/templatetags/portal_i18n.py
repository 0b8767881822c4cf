"""``{% jsi18n_url %}``: the URL of the front end's string catalogue for the page's language."""

from django import template

from portal.jsi18n import catalogue_url

register = template.Library()


@register.simple_tag
def jsi18n_url() -> str:
    """Return ``/jsi18n/?l=<language>&v=<catalogue mtime>`` (see :mod:`portal.jsi18n`)."""
    return catalogue_url()
