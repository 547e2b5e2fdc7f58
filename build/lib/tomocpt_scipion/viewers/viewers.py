"""Viewers of the plugin's protocols. GUI toolkits are imported only when a view is shown."""

import os

from pyworkflow.viewer import DESKTOP_TKINTER, WEB_DJANGO, MessageView, View, Viewer

from ..constants import BOX_TO_DIAMETER
from ..protocols import ProtTomoCPTEvaluate, ProtTomoCPTFilter, ProtTomoCPTPick, ProtTomoCPTTrain

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


class PickBrowserView(View):
    """One tomogram's picks in the engine's pick browser (matplotlib; works over remote X)."""

    def __init__(self, tomogramFile, table, radiusPx, title, onSave):
        View.__init__(self)
        self.tomogramFile, self.table, self.radiusPx, self.title, self.onSave = (
            tomogramFile,
            table,
            radiusPx,
            title,
            onSave,
        )
        self.browser = None

    def build(self, figure=None):
        """Make the browser (a new window unless ``figure`` is given); returns it."""
        from ..engine.browser import PickBrowser
        from ..engine.io import read_mrc

        volume, _ = read_mrc(self.tomogramFile)
        self.browser = PickBrowser(
            volume,
            self.table,
            self.radiusPx,
            threshold=float(self.table["score"].min()),
            title=self.title,
            on_save=self.onSave,
            figure=figure,
        )
        return self.browser

    def show(self):
        import matplotlib.pyplot as plt

        self.build()
        plt.show(block=False)


class TomoCPTPickBrowser(Viewer):
    """Browse the picks slice by slice (xy, xz, yz), coloured by score, with a threshold slider and the score
    histogram; "keep this threshold" launches a filter-picks run that outputs the picks at or above it."""

    _label = "browse picks by score"
    _targets = [ProtTomoCPTPick, ProtTomoCPTFilter]
    _environments = [DESKTOP_TKINTER]
    #: windows opened at once; the other tomograms are named in a message
    MAX_WINDOWS = 8

    def _visualize(self, protocol, **kwargs):
        from tomo.objects import SetOfCoordinates3D

        from ..convert import coordinatesTable, tomogramFile

        views = []
        for outputName, coordinates in protocol.iterOutputAttributes():
            if not isinstance(coordinates, SetOfCoordinates3D):
                continue
            tomograms = coordinates.getPrecedents()
            table = coordinatesTable(coordinates, tomograms)
            radiusPx = (coordinates.getBoxSize() or 0) / BOX_TO_DIAMETER / 2 or 10.0
            files = {t.getTsId(): tomogramFile(t) for t in tomograms}
            for tsId, rows in table.groupby("tomo_name", sort=True):

                def onSave(threshold, name=outputName):
                    return self.keepThreshold(protocol, name, threshold)

                views.append(
                    PickBrowserView(
                        files[tsId],
                        rows.reset_index(drop=True),
                        {c: radiusPx for c in rows["class_id"].unique()},
                        f"{tsId} ({outputName})",
                        onSave,
                    )
                )
        if not views:
            return [MessageView("No picks yet.")]
        rest = (
            [
                MessageView(
                    f"{len(views) - self.MAX_WINDOWS} more tomogram(s) not opened: "
                    f"{', '.join(v.title for v in views[self.MAX_WINDOWS :])}"
                )
            ]
            if len(views) > self.MAX_WINDOWS
            else []
        )
        return views[: self.MAX_WINDOWS] + rest

    def keepThreshold(self, protocol, outputName, threshold, wait=False):
        """Launch a filter-picks run of ``protocol``'s output ``outputName`` at ``threshold``; returns it."""
        project = protocol.getProject()
        run = project.newProtocol(ProtTomoCPTFilter, objLabel=f"picks with score ≥ {threshold:.3g}")
        run.inputCoordinates.set(protocol)
        run.inputCoordinates.setExtended(outputName)
        run.useThreshold.set(True)
        run.threshold.set(float(threshold))
        project.launchProtocol(run, wait=wait)
        return run


class TomoCPTEvaluateViewer(Viewer):
    """Metrics table per tomogram, precision-recall, F1 vs threshold and score histograms."""

    _label = "evaluation"
    _targets = [ProtTomoCPTEvaluate]
    _environments = [DESKTOP_TKINTER, WEB_DJANGO]

    def getTableRows(self, protocol):
        """Rows of the metrics table: one per tomogram and the overall one."""
        return [
            (
                r["tomo_name"],
                int(r["tp"]),
                int(r["fp"]),
                int(r["fn"]),
                f"{r['precision']:.3f}",
                f"{r['recall']:.3f}",
                f"{r['f1']:.3f}",
                f"{r['ad_px']:.2f}",
                f"{r['ad_a']:.1f}",
            )
            for r in protocol.getPerTomogramMetrics()
        ]

    def _visualize(self, protocol, **kwargs):
        rows = self.getTableRows(protocol)
        if not rows:
            return [MessageView("The evaluation has not finished yet.")]
        from pwem.viewers.views import TableView  # imports tkinter: only when shown

        table = TableView(
            headerList=_METRIC_HEADER,
            dataList=rows,
            mesg=f"Best score threshold {protocol.bestThreshold.get():.3g}",
            title="Evaluation",
            height=min(len(rows), 20),
        )
        return [table] + _pngViews([protocol.getPlotPath()], "")
