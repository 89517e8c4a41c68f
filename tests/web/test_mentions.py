"""Every "release #N" in free text (an audit reason, a flash message, why a release waits)
links to that release's page, and the rest of the text stays text."""
from flask import render_template_string

LINKED = '{% from "_macros.html" import linked %}{{ linked(text) }}'


def test_each_mention_of_a_release_links_to_it_and_the_rest_is_escaped(app):
    text = "<b>moved</b> behind emergency release #12 (by carol); bot release #7, Release #3 and #4 stay"
    with app.test_request_context():
        html = render_template_string(LINKED, text=text)
    assert html == ('&lt;b&gt;moved&lt;/b&gt; behind <a href="/releases/12">emergency release #12</a> (by carol); '
                    '<a href="/releases/7">bot release #7</a>, <a href="/releases/3">Release #3</a> and #4 stay')


def test_text_without_a_mention_or_without_text_is_drawn_as_it_is(app):
    with app.test_request_context():
        assert render_template_string(LINKED, text="took the slot & ran") == "took the slot &amp; ran"
        assert render_template_string(LINKED, text=None) == ""
