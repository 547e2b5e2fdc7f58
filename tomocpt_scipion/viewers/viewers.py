"""Viewers of the plugin's protocols. GUI toolkits are imported only when a view is shown."""
import os

from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO, MessageView, View, Viewer

from ..protocols import ProtTomoCPTEvaluate, ProtTomoCPTPick, ProtTomoCPTTrain

_METRIC_HEADER = ["tomogram", "TP", "FP", "FN", "precision", "recall", "F1", "AD (px)", "AD (Å)"]


class PngView(View):
    """A PNG written by the engine, shown in a matplotlib window."""

    def __init__(self, path, title=""):
        View.__init__(self)
        self.path = path
        self.title = title or os.path.basename(path)

    def show(self):
        import matplotlib.image
        import matplotlib.pyplot as plt

        figure = plt.figure(self.title, figsize=(12, 5))
        axis = figure.add_axes([0, 0, 1, 1])
        axis.imshow(matplotlib.image.imread(self.path))
        axis.axis("off")
        plt.show(block=False)


def _pngViews(paths, missingMessage):
    existing = [p for p in paths if os.path.exists(p)]
    return [PngView(p) for p in existing] or [MessageView(missingMessage)]


class TomoCPTTrainViewer(Viewer):
    """Learning curves (training and validation loss, learning rate) of a training run."""

    _label = "learning curves"
    _targets = [ProtTomoCPTTrain]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _visualize(self, protocol, **kwargs):
        return _pngViews([protocol.getLearningCurvePath()], "No epoch has finished yet.")


class TomoCPTPickViewer(Viewer):
    """The picks of every tomogram drawn over three of its slices."""

    _label = "picks over slices"
    _targets = [ProtTomoCPTPick]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def _visualize(self, protocol, **kwargs):
        paths = [protocol.getPreviewPath(t.getTsId()) for t in protocol.inputTomograms.get()]
        return _pngViews(paths, "No tomogram has been picked yet.")


class TomoCPTEvaluateViewer(Viewer):
    """Metrics table per tomogram, precision-recall, F1 vs threshold and score histograms."""

    _label = "evaluation"
    _targets = [ProtTomoCPTEvaluate]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def getTableRows(self, protocol):
        """Rows of the metrics table: one per tomogram and the overall one."""
        return [(r["tomo_name"], int(r["tp"]), int(r["fp"]), int(r["fn"]), f"{r['precision']:.3f}",
                 f"{r['recall']:.3f}", f"{r['f1']:.3f}", f"{r['ad_px']:.2f}", f"{r['ad_a']:.1f}")
                for r in protocol.getPerTomogramMetrics()]

    def _visualize(self, protocol, **kwargs):
        rows = self.getTableRows(protocol)
        if not rows:
            return [MessageView("The evaluation has not finished yet.")]
        from pwem.viewers.views import TableView  # imports tkinter: only when shown

        table = TableView(headerList=_METRIC_HEADER, dataList=rows, mesg=f"Best score threshold "
                          f"{protocol.bestThreshold.get():.3g}", title="Evaluation", height=min(len(rows), 20))
        return [table] + _pngViews([protocol.getPlotPath()], "")
