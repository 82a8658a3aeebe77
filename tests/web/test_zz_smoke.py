def test_smoke(open_page, web_node):
    page = open_page()
    page.wait_for_selector("#results li")
    page.goto(web_node.url + "/#/item/kestrel-msi-l2a/K1A_MSI_L2A_20240318T082527_CAIRO")
    page.wait_for_selector("body[data-ready]")
    page.wait_for_selector("#item h1")
    page.wait_for_timeout(3000)
    print(page.inner_text("#item"))

def test_smoke2(open_page, web_node):
    page = open_page()
    page.goto(web_node.url + "/#/item/monsoon-sar-grd/M1_SAR_GRD_20240802T115825_DHAKA")
    page.wait_for_selector("body[data-ready]")
    page.wait_for_selector("#item h1")
    page.wait_for_timeout(3000)
    print(page.inner_text("#item"))
    page.goto(web_node.url + "/#/collections")
    page.wait_for_timeout(1000)
